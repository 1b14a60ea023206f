"""Interaction data: the MovieLens-100K loader and downloader, loaders for the user's own
CSV/parquet logs and sequence-per-line files, and (from :mod:`rechub_core.synthetic`) a
synthetic generator with planted structure.

Every loader returns :class:`Interactions` with raw ids; :func:`rechub_core.preprocess.prepare`
turns it into model-ready arrays under the evaluation protocol.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import attrs
import numpy as np
import pandas as pd

from rechub_core.errors import InputError
from rechub_core.ids import ids_as_text, parse_id_column

__all__ = [
    "DEFAULT_MD5",
    "DEFAULT_SHA256",
    "DEFAULT_URL",
    "Interactions",
    "default_cache_dir",
    "download_movielens_100k",
    "fetch_movielens_100k",
    "is_sequence_file",
    "load_interactions_file",
    "load_movielens_100k",
    "load_sequence_file",
    "locate_movielens_100k",
    "movielens_100k_source",
    "write_sequence_file",
]

#: The official GroupLens archive of MovieLens-100K.
DEFAULT_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
#: Published MD5 of ml-100k.zip (GroupLens' ml-100k.zip.md5; 4,924,029 bytes).
DEFAULT_MD5 = "0e33842e24a9c977be4e0107933c0723"
#: SHA-256 of the same archive, as pinned by several independent projects.
DEFAULT_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"

_ML100K_REQUIRED = ("u.data", "u.item", "u.user")
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_AGE_EDGES = (18, 25, 35, 45, 50, 56)
_AGE_LABELS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")


@attrs.frozen(eq=False)
class Interactions:
    """Raw interaction data.

    ``events``: columns ``user_id``, ``item_id`` (raw ids, str or int) and ``timestamp`` (any
    sortable type, e.g. unix seconds), one row per interaction. ``users``: index = raw user id,
    categorical profile columns, or None. ``items``: index = raw item id, optional ``"title"``
    (str) and categorical columns such as ``"category"``, or None. ``name``: for messages/reports.
    """

    events: pd.DataFrame
    users: pd.DataFrame | None
    items: pd.DataFrame | None
    name: str


# --------------------------------------------------------------------------- MovieLens-100K


def _find_ml100k_dir(data_dir: Path) -> Path:
    return find_movielens_100k(data_dir) or data_dir


def default_data_dir() -> Path:
    """``$RECHUB_DATA_DIR``, else ``../shared/data`` next to the repository checkout."""
    env = os.environ.get("RECHUB_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def find_movielens_100k(base: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder holding MovieLens-100K's ``u.data`` under ``base`` (or ``base/ml-100k``);
    without ``base``: under :func:`default_data_dir`, else in the download cache
    (:func:`default_cache_dir`, where ``rechub data fetch movielens-100k`` puts it). None when
    absent."""
    roots = [Path(base)] if base is not None else [default_data_dir(), default_cache_dir()]
    for root in roots:
        for cand in (root, root / "ml-100k"):
            if (cand / "u.data").is_file():
                return cand
    return None


ENV_CACHE = "RECHUB_CACHE"
ENV_ML100K_URL = "RECHUB_ML100K_URL"
ENV_ML100K_MD5 = "RECHUB_ML100K_MD5"


def default_cache_dir() -> Path:
    """Where downloads go: ``$RECHUB_CACHE``, else ``~/.cache/rechub``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rechub"


def movielens_100k_source() -> tuple[str, str | None, str | None]:
    """``(url, md5, sha256)`` to fetch MovieLens-100K from: the official GroupLens archive and
    its published checksums, or a mirror named by ``$RECHUB_ML100K_URL`` (any URL urllib reads,
    ``file://`` included) whose MD5 ``$RECHUB_ML100K_MD5`` must give.

    Raises:
        InputError: a mirror URL without its MD5.
    """
    url = os.environ.get(ENV_ML100K_URL)
    if not url:
        return DEFAULT_URL, DEFAULT_MD5, DEFAULT_SHA256
    md5 = os.environ.get(ENV_ML100K_MD5)
    if not md5:
        raise InputError(
            f"{ENV_ML100K_URL}={url} is set but {ENV_ML100K_MD5} is not; set {ENV_ML100K_MD5} "
            f"to the archive's MD5 (md5sum ml-100k.zip), or unset {ENV_ML100K_URL} to use "
            f"the official archive {DEFAULT_URL}"
        )
    return url, md5, None


def fetch_movielens_100k(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Download MovieLens-100K into ``cache_dir`` (default :func:`default_cache_dir`) from
    :func:`movielens_100k_source`, checksum verified; a copy already there is reused. Returns
    the folder holding ``u.data``."""
    url, md5, sha256 = movielens_100k_source()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return download_movielens_100k(cache, url=url, md5=md5, sha256=sha256)


def locate_movielens_100k(data_dir: str | os.PathLike[str] | None, download: bool = False) -> Path:
    """The MovieLens-100K folder ``rechub train --data movielens-100k`` reads.

    ``data_dir`` given: only there. Otherwise :func:`default_data_dir`, then the download cache
    (where ``rechub data fetch movielens-100k`` puts it). ``download``: fetch it into the cache
    when it is found nowhere.

    Raises:
        InputError: not found and ``download`` is False; the message names the places looked
            in and the commands that fix it.
    """
    cache = default_cache_dir()
    places = [Path(data_dir)] if data_dir else [default_data_dir(), cache]
    for place in places:
        found = find_movielens_100k(place)
        if found is not None:
            return found
    if download:
        return fetch_movielens_100k(cache)
    raise InputError(
        f"MovieLens-100K not found in {' nor in '.join(str(p) for p in places)}; fetch it once "
        f"with `rechub data fetch movielens-100k` (into {cache}, or ${ENV_CACHE}), add "
        "--download to this command, or pass --data-dir DIR (the folder with u.data)"
    )


def _age_bucket(age: np.ndarray) -> np.ndarray:
    labels = np.asarray(_AGE_LABELS, dtype=object)
    return labels[np.searchsorted(np.asarray(_AGE_EDGES), age, side="right")]


def load_movielens_100k(data_dir: str | os.PathLike[str]) -> Interactions:
    """Read MovieLens-100K in its original format from ``data_dir``.

    ``data_dir`` is the folder holding ``u.data``, ``u.user``, ``u.item`` (and ``u.genre``), or
    its parent. Events: 100,000 rows, int ids, timestamp in unix seconds. Users (943): ``gender``,
    ``age`` (bucket ``<18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+``), ``occupation``. Items
    (1682): ``title`` and ``category`` = the first genre flag set (``"unknown"`` if none).
    """
    root = _find_ml100k_dir(Path(data_dir))
    for fname in _ML100K_REQUIRED:
        if not (root / fname).is_file():
            raise InputError(
                f"MovieLens-100K file {fname!r} not found in {os.fspath(root)!r}; pass "
                "--data-dir pointing at the extracted ml-100k folder, or fetch it with "
                "`rechub data fetch movielens-100k` (in code: fetch_movielens_100k())"
            )
    events = pd.read_csv(
        root / "u.data",
        sep="\t",
        header=None,
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype=np.int64,
    )[["user_id", "item_id", "timestamp"]]
    users_raw = pd.read_csv(
        root / "u.user",
        sep="|",
        header=None,
        names=["user_id", "age", "gender", "occupation", "zip"],
        dtype={"user_id": np.int64, "age": np.int64, "gender": str, "occupation": str, "zip": str},
    )
    users = pd.DataFrame(
        {
            "gender": users_raw["gender"].to_numpy(dtype=object),
            "age": _age_bucket(users_raw["age"].to_numpy()),
            "occupation": users_raw["occupation"].to_numpy(dtype=object),
        },
        index=pd.Index(users_raw["user_id"].to_numpy(), name="user_id"),
    )
    genres = list(_ML100K_GENRES)
    if (root / "u.genre").is_file():
        gdf = pd.read_csv(
            root / "u.genre", sep="|", header=None, names=["name", "idx"], encoding="latin-1"
        ).dropna()
        genres = [str(n) for n in gdf.sort_values("idx")["name"]]
    item_cols = ["item_id", "title", "release", "video", "url", *[f"g{i}" for i in range(19)]]
    items_raw = pd.read_csv(
        root / "u.item",
        sep="|",
        header=None,
        names=item_cols,
        encoding="latin-1",
        dtype={"item_id": np.int64, "title": str},
        keep_default_na=False,
    )
    flags = items_raw[[f"g{i}" for i in range(19)]].to_numpy(dtype=np.int64) > 0
    first = flags.argmax(axis=1)
    genre_names = np.asarray(genres[: flags.shape[1]], dtype=object)
    category = np.where(flags.any(axis=1), genre_names[first], "unknown").astype(object)
    items = pd.DataFrame(
        {"title": items_raw["title"].to_numpy(dtype=object), "category": category},
        index=pd.Index(items_raw["item_id"].to_numpy(), name="item_id"),
    )
    return Interactions(events=events, users=users, items=items, name="ml-100k")


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ml100k_present(folder: Path) -> bool:
    return all((folder / f).is_file() and (folder / f).stat().st_size > 0 for f in _ML100K_REQUIRED)


def download_movielens_100k(
    cache_dir: str | os.PathLike[str],
    url: str = DEFAULT_URL,
    md5: str | None = DEFAULT_MD5,
    sha256: str | None = DEFAULT_SHA256,
    timeout: float = 60,
) -> Path:
    """Download and extract MovieLens-100K into ``cache_dir``; return the folder holding u.data.

    The archive is verified against ``md5`` and/or ``sha256`` (defaults: the published checksums
    of the official ``ml-100k.zip``; pass your own with another ``url``; at least one is
    required). Extraction goes to a temporary folder inside ``cache_dir`` that is then moved into
    place with ``os.replace``, so a failure leaves no partial files. If
    ``cache_dir/ml-100k`` already holds non-empty ``u.data``, ``u.item`` and ``u.user``, nothing
    is downloaded. ``timeout``: seconds for the HTTP connection. A checksum mismatch raises
    :class:`InputError`.
    """
    if not md5 and not sha256:
        raise InputError(
            "download_movielens_100k needs a checksum: pass md5=... and/or sha256=... of the "
            "archive at url"
        )
    cache = Path(cache_dir)
    target = cache / "ml-100k"
    if _ml100k_present(target):
        return target
    created = not cache.exists()
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".ml-100k.", suffix=".zip.part", dir=cache)
    tmp_zip = Path(tmp_name)
    tmp_dir: Path | None = None
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise InputError(
                f"could not download MovieLens-100K from {url!r}: {exc}; check the network or "
                "download ml-100k.zip yourself, extract it and pass --data-dir"
            ) from exc
        for algo, expected in (("md5", md5), ("sha256", sha256)):
            if expected:
                got = _file_digest(tmp_zip, algo)
                if got.lower() != expected.lower():
                    raise InputError(
                        f"checksum mismatch for {url!r}: {algo} is {got}, expected {expected}; "
                        "the download is corrupt or the archive changed — retry, or give the "
                        f"right {algo} for this url ({algo}= in code, ${ENV_ML100K_MD5} with a "
                        f"mirror in ${ENV_ML100K_URL})"
                    )
        tmp_dir = Path(tempfile.mkdtemp(prefix=".ml-100k.", suffix=".extract", dir=cache))
        try:
            with zipfile.ZipFile(tmp_zip) as zf:
                zf.extractall(tmp_dir)
        except zipfile.BadZipFile as exc:
            raise InputError(f"{url!r} is not a valid zip archive: {exc}") from exc
        found = sorted(p.parent for p in tmp_dir.rglob("u.data"))
        if not found or not _ml100k_present(found[0]):
            raise InputError(
                f"the archive from {url!r} does not contain {', '.join(_ML100K_REQUIRED)}"
            )
        if target.exists():  # an incomplete earlier copy
            shutil.rmtree(target)
        os.replace(found[0], target)
        return target
    except BaseException:
        if created:  # a failed fetch leaves no empty cache folder behind
            shutil.rmtree(cache, ignore_errors=True)
        raise
    finally:
        tmp_zip.unlink(missing_ok=True)
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- user files


def _parse_times(values: pd.Series, where: str, col: str) -> pd.Series:
    """A time column read as text -> numbers (when any value is a number) or date/times."""
    number = pd.to_numeric(values, errors="coerce")
    bad = number.isna().to_numpy()
    kind = "a number"
    if bad.all():
        with warnings.catch_warnings():  # "could not infer format": each value parsed alone
            warnings.simplefilter("ignore", UserWarning)
            number = pd.to_datetime(values, errors="coerce")
        bad = number.isna().to_numpy()
        kind = "a date/time"
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{where}: column {col!r} holds {values.iloc[row]!r} at data row {row} (line "
            f"{row + 2}), which is not {kind} like the column's other values; fix or drop "
            "that row, or pass --time-col naming a numeric or date column"
        )
    return number


def load_interactions_file(
    path: str | os.PathLike[str],
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
) -> Interactions:
    """Read interactions from a CSV (``.parquet``/``.pq``: parquet) file with a header row.

    Columns ``user_col``, ``item_col`` and ``time_col`` become ``user_id``, ``item_id``,
    ``timestamp``; other columns are dropped. Ids are read as text and each id column is
    int64 only when every value is a canonical int64 (:func:`parse_id_column`), else str, so
    ``"0003"`` and ``"3"`` stay apart and huge ids never overflow. Times are numbers or date
    strings; a value of the wrong kind is named with its row. Users and items tables are None.
    """
    p = Path(path)
    where = repr(os.fspath(p))
    if p.is_dir():
        raise InputError(f"interactions file {where} is a folder; pass the file inside it")
    if not p.is_file():
        raise InputError(f"interactions file {where} does not exist; check the path")
    if p.suffix.lower() in (".parquet", ".pq"):
        if importlib.util.find_spec("pyarrow") is None:
            raise InputError(
                f"reading parquet file {where} needs pyarrow; install it "
                "(pip install pyarrow) or convert the file to CSV"
            )
        try:
            df = pd.read_parquet(p)
        except Exception as exc:  # pyarrow raises its own ArrowInvalid etc.
            raise InputError(f"cannot read {where} as parquet: {exc}") from exc
    else:
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot parse {where} as CSV: {exc}") from exc
    wanted = {user_col: "--user-col", item_col: "--item-col", time_col: "--time-col"}
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        flags = ", ".join(f"{wanted[c]} (now {c!r})" for c in missing)
        raise InputError(
            f"{where} lacks column(s) {missing}; columns found: {list(df.columns)}. "
            f"Name the right columns with {flags}"
        )
    for src in (user_col, item_col, time_col):
        col = df[src]
        empty = col.isna().to_numpy()
        if not pd.api.types.is_numeric_dtype(col):
            empty = empty | (col.astype(str) == "").to_numpy()
        if empty.any():
            raise InputError(
                f"{where}: column {src!r} has {int(empty.sum())} empty/NaN value(s) "
                f"(first at data row {int(np.flatnonzero(empty)[0])}); drop or fill those rows"
            )
    ts = df[time_col]
    if not (pd.api.types.is_numeric_dtype(ts) or pd.api.types.is_datetime64_any_dtype(ts)):
        ts = _parse_times(ts.astype(str), where, time_col)
    events = pd.DataFrame(
        {
            "user_id": parse_id_column(ids_as_text(df[user_col])),
            "item_id": parse_id_column(ids_as_text(df[item_col])),
            "timestamp": ts.to_numpy(),
        }
    )
    return Interactions(events=events, users=None, items=None, name=p.stem)


# --------------------------------------------------------------------------- sequence files

#: File suffixes read as the sequence-per-line format (``user item item ...``).
SEQUENCE_SUFFIXES = (".txt",)


def is_sequence_file(path: str | os.PathLike[str]) -> bool:
    """True for a file in the sequence-per-line format, recognised by its suffix (``.txt``)."""
    return Path(path).suffix.lower() in SEQUENCE_SUFFIXES


def _id_array(tokens: list[str]) -> np.ndarray:
    """Raw ids by the project's id rule (:func:`rechub_core.ids.parse_id_column`): int64 when
    every token is a canonical int64 (``0003`` and ``3`` stay two ids), else the strings."""
    return parse_id_column(pd.Series(tokens, dtype=object))


def load_sequence_file(path: str | os.PathLike[str]) -> Interactions:
    """Read the sequence-per-line format: one line per user, ``user item item ...``, items in
    time order (the S3-Rec preprocessing of Amazon Sports/Toys and Yelp).

    The position in the line is the time (``timestamp`` 0, 1, 2, ...), so the protocol's last
    item of a user is the line's last item. Blank lines are skipped. Users with fewer than
    ``min_interactions`` items are dropped later by :func:`rechub_core.preprocess.prepare`, as
    for every other input.

    Raises:
        InputError: naming the file and line number for a line without at least one item and
            for a user that appears on two lines.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"sequence file {os.fspath(p)!r} does not exist; check the path")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{os.fspath(p)!r} is not UTF-8 text ({exc})") from exc
    users: list[str] = []
    lengths: list[int] = []
    items: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise InputError(
                f"{os.fspath(p)!r} line {number}: expected 'user item item ...' (a user id "
                f"followed by at least one item id), got {line.strip()!r}"
            )
        user = tokens[0]
        if user in first_line:
            raise InputError(
                f"{os.fspath(p)!r} line {number}: user {user!r} already has a sequence on line "
                f"{first_line[user]}; each user needs exactly one line (merge the two)"
            )
        first_line[user] = number
        users.append(user)
        lengths.append(len(tokens) - 1)
        items.extend(tokens[1:])
    if not users:
        raise InputError(f"{os.fspath(p)!r} has no sequences (empty file)")
    counts = np.asarray(lengths, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    events = pd.DataFrame(
        {
            "user_id": np.repeat(_id_array(users), counts),
            "item_id": _id_array(items),
            "timestamp": np.arange(len(items), dtype=np.int64) - starts,  # position in line
        }
    )
    return Interactions(events=events, users=None, items=None, name=p.stem)


def write_sequence_file(interactions: Interactions, path: str | os.PathLike[str]) -> Path:
    """Write ``interactions`` in the sequence-per-line format (users and, per user, items in
    (timestamp, raw item id) order, as the protocol orders them); returns the path."""
    ev = interactions.events.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    lines = [
        " ".join([str(user), *(str(i) for i in group["item_id"].to_numpy())])
        for user, group in ev.groupby("user_id", sort=True)
    ]
    p = Path(path)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
