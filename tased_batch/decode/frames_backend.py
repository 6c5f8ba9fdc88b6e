"""A folder of frame images: sorted by name, cv2.imread, cv2.resize (W, H), BGR -> RGB, as the released script."""

from __future__ import annotations

import numpy as np

from tased_batch.core.errors import VideoError
from tased_batch.decode.backend import basename, cv2_module
from tased_batch.decode.sampling import FOLDER_FPS


class FramesBackend:
    name = "frames"

    def __init__(self, fs, paths: list[str], size: tuple[int, int], display: str) -> None:
        self._fs, self._paths, self._size, self._display = fs, paths, size, display
        self.n_frames = len(paths)
        self.fps = FOLDER_FPS

    def image(self, i: int) -> np.ndarray:
        cv2 = cv2_module()
        path = self._paths[i]
        try:
            data = self._fs.cat_file(path)
        except OSError as e:
            raise VideoError(
                self._display, "io-error", f"frame image {path} cannot be read: {e}", transient=True
            ) from e
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(
                self._display,
                "corrupt-frame",
                f"frame {i} ({basename(path)}) is not a readable image",
                "replace or remove that image",
            )
        return img

    def read(self, indices: np.ndarray) -> np.ndarray:
        cv2 = cv2_module()
        h, w = self._size
        return np.stack(
            [
                cv2.cvtColor(cv2.resize(self.image(i), (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
                for i in indices.tolist()
            ]
        )

    def close(self) -> None:
        pass
