"""Turn an input (file, folder, glob, object-store prefix, manifest, tar shards) into videos.

Listing is streaming and cheap: one directory listing per folder or prefix, one read per
manifest or tar shard, and never a request per manifest row, so a plan over a million
videos costs seconds. Anything fsspec can address works; S3-compatible stores take their
endpoint from the standard ``AWS_ENDPOINT_URL`` variable or ``--storage-option``, and
credentials come only from the standard AWS chain.

Video ids (stable across runs, documented in docs/decoding.md):

* file in a folder, prefix or glob: its path relative to the folder (or the glob's fixed
  part), without the extension (``sub/clip`` for ``<root>/sub/clip.mp4``);
* a single file: its name without the extension;
* a folder of frame images: its path relative to the root (its own name if it is the root);
* a tar-shard member: its WebDataset sample key (``00001/000000042`` for
  ``00001/000000042.mp4``), so maps join back to the captions of the same sample;
* a manifest row: the ``--id-col`` value, else the URL's file name without the extension;
* a Lance table row (``clips.lance``): the same, or ``<table name>/<row>`` with ``--bytes-col``.

When an id is already taken, the later video gets ``<id>~<8 hex of sha1(uri, member)>``
(plus ``~2``, ``~3``... for exact duplicates), so resolution depends only on the input.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import fsspec

from tased_batch.core.errors import ConfigError, SourceError

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .flv .wmv .mpg .mpeg .m2v .ts .m2ts .mts .3gp .3g2 .ogv "
    ".mxf .vob .gif .y4m .hevc .h264 .264".split()
)
IMAGE_EXTENSIONS = frozenset(".jpg .jpeg .png .bmp .tif .tiff .webp".split())
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MANIFEST_SUFFIXES = frozenset({".txt", ".csv", ".tsv", ".jsonl", ".parquet"})
_GLOB_CHARS = re.compile(r"[*?\[]")
_BRACE = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class VideoSource:
    """One video to process: small and picklable (a plan may hold a million).

    ``uri`` is a local path or a full URL (``s3://bucket/key``). For a video inside a tar
    shard ``uri`` is the shard and ``member`` the member's name; ``offset`` (where the
    member's bytes start in the uncompressed tar stream) and ``size`` (bytes) are filled
    when the listing gave them for free: workers seek to the member in a plain tar, and
    pick the right one of same-named members in a compressed tar.
    """

    video_id: str
    uri: str
    member: str | None = None
    offset: int | None = None
    size: int | None = None

    @property
    def display(self) -> str:
        """How the video is named in messages and failure records."""
        return f"{self.uri}::{self.member}" if self.member else self.uri


def is_remote(uri: str) -> bool:
    """True for URLs that need fsspec (anything with a protocol other than ``file://``)."""
    return "://" in uri and not uri.startswith("file://")


def parse_storage_options(pairs: Iterable[str]) -> dict:
    """``["endpoint_url=http://x", "client_kwargs.region_name=eu"]`` -> fsspec options.

    Values are parsed as JSON where possible (``anon=true`` -> True, ``n=3`` -> 3) and are
    strings otherwise; dotted keys build nested dicts, as s3fs's ``client_kwargs`` needs.
    """
    options: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"--storage-option {pair!r} is not key=value",
                "write it like --storage-option endpoint_url=http://minio:9000",
            )
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        *parents, leaf = key.split(".")
        node = options
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--storage-option {key!r} conflicts with an earlier {part!r}=value")
            node = child
        node[leaf] = value
    return options


def url_path(uri: str) -> str:
    """``uri`` without an HTTP query or fragment (``?sig=...``, ``#t=3``).

    Only web URLs have them: in a file name or an object key (``take#1.mp4``, ``what?.mp4``)
    ``#`` and ``?`` are ordinary characters and stay.
    """
    if uri[:8].lower().startswith(("http://", "https://")):
        return uri.split("?", 1)[0].split("#", 1)[0]
    return uri


def suffix_of(path: str) -> str:
    """Lower-case extension of a path or URL (``.tar.gz`` counts as one suffix)."""
    name = posixpath.basename(url_path(path)).lower()
    if name.endswith(".tar.gz"):
        return ".tar.gz"
    return posixpath.splitext(name)[1]


def is_tar(path: str) -> bool:
    return suffix_of(path) in TAR_SUFFIXES


def sample_key(member: str) -> str:
    """WebDataset's sample key: the member path up to the first dot of its file name."""
    head, name = posixpath.split(member)
    stem = name.split(".", 1)[0]
    return posixpath.join(head, stem) if head else stem


def _strip_ext(relpath: str) -> str:
    head, name = posixpath.split(relpath)
    stem, ext = posixpath.splitext(name)
    stem = stem if ext and stem else name
    return posixpath.join(head, stem) if head else stem


def _clean_id(text: str) -> str:
    """Normalise separators and drop empty/relative parts so ids are safe as store keys."""
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(parts)


class _IdAllocator:
    """Hands out unique ids; a taken id gets a suffix derived from the source itself."""

    def __init__(self) -> None:
        self._taken: set[str] = set()
        # Per suffixed id, the counter its next exact duplicate starts from: every lower one
        # is taken already, so a thousand identical rows cost a thousand steps, not a million.
        self._next: dict[str, int] = {}

    def claim(self, wanted: str, uri: str, member: str | None) -> str:
        wanted = _clean_id(wanted) or "video"
        if wanted not in self._taken:
            self._taken.add(wanted)
            return wanted
        digest = hashlib.sha1(f"{uri}\0{member or ''}".encode()).hexdigest()[:8]
        base = f"{wanted}~{digest}"
        candidate = base
        n = self._next.get(base, 2)
        while candidate in self._taken:
            candidate = f"{base}~{n}"
            n += 1
        self._next[base] = n
        self._taken.add(candidate)
        return candidate


# (wanted id, uri, member, offset, size)
_Row = tuple[str, str, "str | None", "int | None", "int | None"]


def iter_sources(
    input: str,
    *,
    url_col: str = "url",
    id_col: str | None = None,
    storage_options: dict | None = None,
    bytes_col: str | None = None,
) -> Iterator[VideoSource]:
    """Every video of ``input``, in a deterministic order, with unique stable ids.

    Raises :class:`SourceError` when the input itself cannot be listed (missing path,
    unreadable or malformed manifest, a tar given directly that is not a tar). Problems
    with single videos are not detected here: they surface when the video is decoded.
    """
    options = dict(storage_options or {})
    ids = _IdAllocator()
    if bytes_col and not is_lance(input):
        raise SourceError(
            f"--bytes-col reads video bytes from a Lance table, but {input!r} is not one (.lance)",
            "give the Lance table as the input, or drop --bytes-col",
        )
    rows = (
        _list_lance(input.strip().rstrip("/"), url_col, id_col, bytes_col)
        if is_lance(input)
        else _list_input(input, url_col, id_col, options)
    )
    for wanted, uri, member, offset, size in rows:
        yield VideoSource(ids.claim(wanted, uri, member), uri, member, offset, size)


def expand_braces(pattern: str) -> list[str]:
    """WebDataset-style shard ranges: ``s-{000..002}.tar`` and ``{a,b}`` alternatives."""
    match = _BRACE.search(pattern)
    if not match:
        return [pattern]
    body = match.group(1)
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        lo, hi = span.group(1), span.group(2)
        width = len(lo) if lo.startswith("0") else 0
        choices = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for c in choices for p in expand_braces(head + c + tail)]


def _url_to_fs(url: str, options: dict):
    try:
        return fsspec.core.url_to_fs(url, **options)
    except (ImportError, ValueError, TypeError) as e:
        raise SourceError(
            f"cannot address {url!r}: {e}",
            "check the URL's protocol and --storage-option values",
        ) from e


def _uri(fs, path: str) -> str:
    """A full URI for a path of ``fs`` (plain paths for the local disk)."""
    if _is_local(fs):
        return path
    return fs.unstrip_protocol(path)


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _list_input(input: str, url_col: str, id_col: str | None, options: dict) -> Iterator[_Row]:
    if not input or not input.strip():
        raise SourceError("the input is empty", "pass a video file, folder, glob, prefix or manifest")
    for pattern in expand_braces(input.strip()):
        yield from _list_one(pattern, url_col, id_col, options)


def _list_one(input: str, url_col: str, id_col: str | None, options: dict) -> Iterator[_Row]:
    fs, path = _url_to_fs(input, options)
    if _GLOB_CHARS.search(path) and not _exists(fs, path):
        # A path that exists is taken as written (``a[1]/``, ``what?.mp4``), never as a glob.
        yield from _list_glob(fs, path)
        return
    try:
        info = fs.info(path)
    except FileNotFoundError as e:
        raise SourceError(f"input {input!r} does not exist", "check the path or URL (and the bucket name)") from e
    except PermissionError as e:
        raise SourceError(
            f"input {input!r} cannot be read: permission denied",
            "check file permissions or the AWS credentials / role in use",
        ) from e
    except OSError as e:
        raise SourceError(f"input {input!r} cannot be listed: {e}", "check the URL and the network") from e
    if info.get("type") == "directory":
        yield from _list_tree(fs, path.rstrip("/"))
        return
    if info.get("type") not in ("file", None):
        # Reading a FIFO (or a device) as a manifest or shard would block the listing.
        raise SourceError(f"input {input!r} is not a regular file or folder", "pass a file, folder, glob or prefix")
    suffix = suffix_of(path)
    uri = _uri(fs, path)
    if suffix in MANIFEST_SUFFIXES:
        yield from _list_manifest(fs, path, uri, url_col, id_col, options)
    elif suffix in TAR_SUFFIXES:
        yield from _list_tar(fs, path, uri, strict=True)
    else:
        # A file named explicitly is taken as a video whatever its extension.
        yield (_strip_ext(posixpath.basename(path)), uri, None, None, info.get("size"))


def _exists(fs, path: str) -> bool:
    try:
        return bool(fs.exists(path))
    except OSError:
        return False


def _glob_base(path: str) -> str:
    """The fixed directory part of a glob pattern (ids are relative to it)."""
    parts = path.split("/")
    fixed = list(itertools.takewhile(lambda p: not _GLOB_CHARS.search(p), parts[:-1]))
    return "/".join(fixed)


def _list_glob(fs, pattern: str) -> Iterator[_Row]:
    base = _glob_base(pattern)
    try:
        matches = fs.glob(pattern, detail=True)
    except OSError as e:
        raise SourceError(f"glob {pattern!r} cannot be listed: {e}", "check the pattern and credentials") from e
    if not matches:
        raise SourceError(
            f"glob {pattern!r} matches nothing", "check the pattern (quote it so the shell leaves it alone)"
        )
    yield from _list_entries(fs, base, sorted(matches.items()), expand_dirs=True)


def _list_tree(fs, root: str, base: str | None = None) -> Iterator[_Row]:
    """Everything under ``root``; ids are relative to ``base`` (default: ``root``)."""
    try:
        entries = fs.find(root, detail=True)
    except PermissionError as e:
        raise SourceError(f"{root!r} cannot be listed: permission denied", "check permissions or credentials") from e
    except OSError as e:
        raise SourceError(f"{root!r} cannot be listed: {e}", "check the URL and the network") from e
    yield from _list_entries(fs, root if base is None else base, sorted(entries.items()), expand_dirs=False)


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/")
    if root and path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return posixpath.basename(path)


def _list_entries(fs, root: str, entries: list[tuple[str, dict]], *, expand_dirs: bool) -> Iterator[_Row]:
    """Videos, tar members and frame folders among listed entries (sorted by path).

    A folder holding image files and no video file is one video (a frame folder). Frame
    folders come after the files, in path order.
    """
    frame_dirs: dict[str, None] = {}
    video_dirs: set[str] = set()
    for path, info in entries:
        if info.get("type") == "directory":
            if expand_dirs:
                yield from _list_tree(fs, path.rstrip("/"), base=root)
            continue
        suffix = suffix_of(path)
        if info.get("type") not in ("file", None) and suffix in TAR_SUFFIXES:
            # Never opened here (a FIFO blocks): listed as one source, refused by the worker.
            yield (_strip_ext(_relative(path, root)), _uri(fs, path), None, None, None)
        elif suffix in VIDEO_EXTENSIONS:
            video_dirs.add(posixpath.dirname(path))
            yield (_strip_ext(_relative(path, root)), _uri(fs, path), None, None, info.get("size"))
        elif suffix in TAR_SUFFIXES:
            yield from _list_tar(fs, path, _uri(fs, path), strict=False, prefix=_relative(path, root))
        elif suffix in IMAGE_EXTENSIONS:
            frame_dirs[posixpath.dirname(path)] = None
    for folder in sorted(d for d in frame_dirs if d not in video_dirs):
        rel = _relative(folder, root) if folder.rstrip("/") != root.rstrip("/") else posixpath.basename(folder)
        yield (rel, _uri(fs, folder), None, None, None)


def _list_tar(fs, path: str, uri: str, *, strict: bool, prefix: str | None = None) -> Iterator[_Row]:
    """Video members of a tar shard, keyed by their WebDataset sample key.

    An unreadable shard met inside a folder or manifest becomes one source without a
    member, so the failure is recorded for that shard and the batch goes on.
    """
    rows: list[_Row] = []
    try:
        with fs.open(path, "rb") as f:
            # The offset is where the member's bytes start in the uncompressed stream: a
            # worker seeks to it in a plain tar, and in a compressed one it tells apart
            # members that share a name (each would otherwise read the first one's bytes).
            plain = suffix_of(path) == ".tar"
            archive = tarfile.open(fileobj=f, mode="r:") if plain else tarfile.open(fileobj=f, mode="r|*")
            with archive:
                for member in archive:
                    if member.isfile() and suffix_of(member.name) in VIDEO_EXTENSIONS:
                        rows.append((sample_key(member.name), uri, member.name, member.offset_data, member.size))
    except (tarfile.TarError, OSError, EOFError) as e:
        if strict:
            raise SourceError(f"tar shard {uri!r} cannot be read: {e}", "check that it is a complete tar file") from e
        yield (_strip_ext(prefix or posixpath.basename(path)), uri, None, None, None)
        return
    yield from rows


LANCE_MEMBER = "lance:"  # member of a video stored inline in a Lance table: lance:v<version>:<row>:<column>


def is_lance(path: str) -> bool:
    return path.strip().rstrip("/").lower().endswith(".lance")


def lance_member(version: int, row: int, column: str) -> str:
    return f"{LANCE_MEMBER}v{version}:{row}:{column}"


def parse_lance_member(member: str) -> tuple[int, int, str]:
    """(table version, row position, bytes column) of a ``lance:`` member."""
    version, row, column = member[len(LANCE_MEMBER) :].split(":", 2)
    return int(version.removeprefix("v")), int(row), column


def _list_lance(uri: str, url_col: str, id_col: str | None, bytes_col: str | None) -> Iterator[_Row]:
    """Clips of a Lance table, streamed batch by batch (only the id and URL columns are read).

    With ``bytes_col`` each row's mp4 bytes stay in the table: the video's member names the
    table version and row, so workers read that one cell (``take``) and the plan never holds
    the bytes. Otherwise ``url_col`` holds each clip's URI (relative ones resolve against the
    table's folder), as in a manifest.
    """
    try:
        import lance

        dataset = lance.dataset(uri)
    except ImportError as e:
        raise SourceError("a Lance table as input needs pylance", "pip install 'tased-batch[lance]'") from e
    except (ValueError, FileNotFoundError, OSError) as e:
        raise SourceError(f"Lance table {uri!r} cannot be opened: {e}", "check the path or URL") from e
    wanted = bytes_col or url_col
    for col in [wanted] + ([id_col] if id_col else []):
        if col not in dataset.schema.names:
            option = "--bytes-col" if col == bytes_col else "--id-col" if col == id_col else "--url-col"
            raise SourceError(
                f"Lance table {uri!r} has no column {col!r}",
                f"pass {option} with one of: {', '.join(dataset.schema.names[:12])}",
            )
    columns = list(dict.fromkeys(([id_col] if id_col else []) + ([] if bytes_col else [url_col])))
    if not columns:  # bytes without ids: count rows without reading a data column
        columns = [bytes_col] if bytes_col else []
    local = "://" not in uri
    base = os.path.dirname(os.path.abspath(uri)) if local else uri.rsplit("/", 1)[0]
    stem = posixpath.basename(uri)[: -len(".lance")] or "clip"
    row = 0
    for batch in dataset.to_batches(columns=[id_col] if bytes_col and id_col else columns, batch_size=8192):
        keys = batch.column(id_col).to_pylist() if id_col else [None] * batch.num_rows
        urls = batch.column(url_col).to_pylist() if not bytes_col else [None] * batch.num_rows
        for key, url in zip(keys, urls):
            if bytes_col:
                yield (
                    str(key) if key is not None else f"{stem}/{row}",
                    uri,
                    lance_member(dataset.version, row, bytes_col),
                    None,
                    None,
                )
            elif url is not None and str(url).strip():
                target = _resolve(str(url).strip(), base, local)
                name = posixpath.basename(target.split("?", 1)[0].rstrip("/"))
                yield (str(key) if key is not None else _strip_ext(name), target, None, None, None)
            row += 1


def _resolve(entry: str, base: str, local: bool) -> str:
    """A manifest entry as a URI: relative entries resolve against the manifest's folder."""
    if "://" in entry:
        return entry
    if local:
        entry = os.path.expanduser(entry)
        return os.path.normpath(entry if os.path.isabs(entry) else os.path.join(base, entry))
    protocol, rest = base.split("://", 1)
    if entry.startswith("/"):
        return f"{protocol}://{entry.lstrip('/')}"
    return f"{protocol}://{posixpath.normpath(posixpath.join(rest, entry))}"


def _manifest_rows(
    f, suffix: str, url_col: str, id_col: str | None, name: str
) -> Iterator[tuple[int, str, str | None]]:
    """(line, url, id or None) for each entry of a manifest, read as a stream."""
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(f)
        except Exception as e:  # pyarrow raises its own error types for non-parquet data
            raise SourceError(f"manifest {name!r} is not a readable parquet file: {e}") from e
        columns = table.schema_arrow.names
        for col in [url_col] + ([id_col] if id_col else []):
            if col not in columns:
                raise SourceError(
                    f"manifest {name!r} has no column {col!r} (columns: {', '.join(columns)})",
                    "choose the columns with --url-col / --id-col",
                )
        line = 0
        wanted = [url_col] + ([id_col] if id_col and id_col != url_col else [])
        for batch in table.iter_batches(columns=wanted, batch_size=65536):
            urls = batch.column(url_col).to_pylist()
            keys = batch.column(id_col).to_pylist() if id_col else [None] * len(urls)
            for url, key in zip(urls, keys, strict=True):
                line += 1
                yield line, url, key
        return
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    if suffix == ".txt":
        for line, raw in enumerate(text, 1):
            entry = raw.strip()
            if entry and not entry.startswith("#"):
                yield line, entry, None
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text, delimiter="\t" if suffix == ".tsv" else ",")
        header = reader.fieldnames or []
        for col in [url_col] + ([id_col] if id_col else []):
            if col not in header:
                raise SourceError(
                    f"manifest {name!r} has no column {col!r} (columns: {', '.join(header) or 'none'})",
                    "choose the columns with --url-col / --id-col",
                )
        for line, row in enumerate(reader, 2):
            yield line, row[url_col], row[id_col] if id_col else None
    else:  # .jsonl
        for line, raw in enumerate(text, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as e:
                raise SourceError(f"manifest {name!r} line {line} is not JSON: {e}", "fix or remove that line") from e
            if not isinstance(row, dict) or url_col not in row:
                raise SourceError(
                    f"manifest {name!r} line {line} has no {url_col!r} field",
                    "choose the field with --url-col",
                )
            yield line, row[url_col], row.get(id_col) if id_col else None


def _list_manifest(fs, path: str, uri: str, url_col: str, id_col: str | None, options: dict) -> Iterator[_Row]:
    local = _is_local(fs)
    base = os.path.dirname(path) if local else uri.rsplit("/", 1)[0]
    suffix = suffix_of(path)
    try:
        with fs.open(path, "rb") as f:
            for line, url, key in _manifest_rows(f, suffix, url_col, id_col, uri):
                if url is None or not str(url).strip():
                    raise SourceError(
                        f"manifest {uri!r} row {line} has an empty {url_col!r}", "fill or remove that row"
                    )
                target = _resolve(str(url).strip(), base, local)
                if is_tar(target):
                    tfs, tpath = _url_to_fs(target, options)
                    members = list(_list_tar(tfs, tpath, target, strict=False))
                    if key is not None and str(key).strip():
                        members = [(f"{str(key).strip()}/{m[0]}", *m[1:]) for m in members]
                    yield from members
                    continue
                wanted = (
                    str(key).strip()
                    if key is not None and str(key).strip()
                    else _strip_ext(posixpath.basename(url_path(target).rstrip("/")))
                )
                yield (wanted, target, None, None, None)
    except UnicodeDecodeError as e:
        raise SourceError(f"manifest {uri!r} is not UTF-8 text: {e}", "save it as UTF-8") from e
    except csv.Error as e:
        raise SourceError(f"manifest {uri!r} is not valid CSV/TSV: {e}") from e
    except PermissionError as e:
        raise SourceError(
            f"manifest {uri!r} cannot be read: permission denied", "check permissions or credentials"
        ) from e
