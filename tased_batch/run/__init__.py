"""A run: plan the shards, hold the lease, hand shards to Ray actors, commit, report, resume.

* :mod:`.job`: one run end to end (``run``/``resume``), and its report;
* :mod:`.plan`: sources into shards, the run's state under OUTPUT;
* :mod:`.executor`: shards to Ray actors, retries, deadlines, progress events;
* :mod:`.shards`: one actor's work: decode feed -> engine -> store sinks, per shard;
* :mod:`.pipeline`: the in-process producer and one-video prediction (``predict``, Ray Data);
* :mod:`.runrecords`, :mod:`.progress`: typed events and how they are shown;
* :mod:`.local_ray`, :mod:`.submit`: a local cluster, and jobs on a remote one.

The run drives the layers below (decode, model, engine, stores); none of them imports it.
"""
