"""Content digests: what a plate's input files hold, whatever their names or file times.

A rerun must notice an input whose content changed even when its mtime was
set back (`cp -p`, `rsync -t` and `tar x` do that), and must not redo a plate
whose files only moved. So inputs are keyed by the sha256 of their bytes.
Hashing a whole data release again on every resume would cost a full read,
so a digest recorded with the file's size, mtime, ctime and inode is reused
while all four are unchanged: any write changes the ctime, which no user
tool can set back.
"""

import hashlib
import json
import os

from qsopipe.pipeline.errors import InputError

CHUNK_BYTES = 1 << 20


def sha256_of_file(path):
    """Hex sha256 of the bytes of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(path):
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def file_records(paths, known=None):
    """{path: {"signature": [size, mtime_ns, ctime_ns, inode], "sha256": hex}} of `paths`.

    known : records from an earlier call; a path whose signature is unchanged
        keeps its recorded digest instead of being read again.
    Raises InputError naming a file that cannot be read.
    """
    known = known or {}
    records = {}
    for path in paths:
        try:
            signature = _signature(path)
            previous = known.get(path)
            if previous and previous.get("signature") == signature:
                records[path] = previous
            else:
                records[path] = {"signature": signature, "sha256": sha256_of_file(path)}
        except OSError as err:
            raise InputError(path, f"not readable ({err.strerror})") from None
    return records


def content_key(records):
    """One sha256 for a set of files' contents (`file_records`), independent of their paths and order."""
    return sha256_of_text(json.dumps(sorted(record["sha256"] for record in records.values())))


def sha256_of_text(text):
    return hashlib.sha256(text.encode()).hexdigest()
