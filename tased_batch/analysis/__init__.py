"""Reading finished stores: saliency metrics, evaluation against ground truth, overlays.

* :mod:`.metrics`: the standard saliency metrics (CC, NSS, SIM, AUC-J, KLD);
* :mod:`.evaluate`: a store's maps against fixation data (``tased-batch evaluate``);
* :mod:`.render`: overlay videos and crops (``tased-batch render``).

Analysis reads stores through :func:`tased_batch.open_results`; nothing below imports it.
"""
