"""Type stubs of the native module ``veil._veil`` (crates/veil-py)."""

import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

__version__: str

class VeilError(Exception):
    """Base class of Veil's errors (messages never carry values)."""

class KeyFileError(VeilError):
    """The key file is missing, readable by group or others, or not 64 hex digits."""

class RecipeError(VeilError):
    """The recipe cannot be read or is invalid."""

class PolicyError(VeilError):
    """Unknown option, or an option this build cannot run."""

class NotDicomError(VeilError):
    """The data is not a DICOM object Veil can parse."""

class SiteError(VeilError):
    """The site cannot be opened or a release cannot run (keys, store,
    recipient, purpose, OUT)."""

class Key:
    """A pseudonymization key; its repr shows only the key id."""

    @staticmethod
    def load(path: Union[str, "os.PathLike[str]"]) -> "Key":
        """Loads a key file (mode 0600, 64 hex digits), as ``veil deid --key``."""
    @property
    def id(self) -> str:
        """The key id (a hash of the key)."""

Outcome = Literal["written", "review", "quarantined", "not-dicom"]

class Result:
    """The result for one object."""

    @property
    def output(self) -> Optional[bytes]:
        """The output file's bytes ("written" and "review"; None from deid_file)."""
    @property
    def outcome(self) -> Outcome:
        """"written", "review", "quarantined" or "not-dicom"."""
    @property
    def reason(self) -> Optional[str]:
        """Why it was not released: rule and kind names, never values."""
    @property
    def name(self) -> Optional[str]:
        """``<patient>/<study>/<series>/<instance>.dcm``, as ``veil deid`` names it under OUT."""

class Policy:
    """Key, recipe and PS3.15 options, as ``veil deid --key --recipe --option``."""

    def __init__(
        self,
        key: Key,
        recipe: Union[str, "os.PathLike[str]", None] = None,
        options: Sequence[str] = ...,
    ) -> None:
        """``recipe``: a path, or TOML text (a str with ``=`` or a newline)."""
    @property
    def options(self) -> List[str]: ...
    @property
    def key_id(self) -> str: ...
    def deid_bytes(self, data: bytes, dicomdir: bool = False) -> Result:
        """De-identifies one object; output bytes equal ``veil deid``'s file."""
    def deid_series(self, series: Sequence[bytes], dicomdir: bool = False) -> List[Result]:
        """The instances of one CT/MR series, defaced as a volume with
        ``clean-recognizable-visual-features``; one Result per input."""
    def deid_file(
        self, src: Union[str, "os.PathLike[str]"], dst: Union[str, "os.PathLike[str]"]
    ) -> Result:
        """De-identifies ``src``; writes ``dst`` atomically when "written"."""

def verify_bytes(output: bytes, source: Optional[bytes] = None) -> List[Dict[str, str]]:
    """Failing findings of ``veil verify``: dicts with category, place, detector."""

def explain(data: bytes, policy: Policy) -> Dict[str, Any]:
    """``veil explain --json`` as a dict: options, review, decisions."""

OUT_MARKER: str
"""The OUT marker's file name (``.veil-out.json``)."""
REVIEW_INDEX: str
"""The review index's file name (``.veil-review.json``)."""

class Inputs:
    """Inputs to read: a local file or folder, or ``s3://bucket/prefix``
    (credentials and endpoint from AWS_* environment variables)."""

    def __init__(self, location: str) -> None: ...
    def list(self) -> List[Tuple[str, int]]:
        """(name, size) of every input in ``veil deid``'s order: local paths,
        or object keys relative to the prefix; bookkeeping files left out."""
    def read(self, name: str) -> bytes:
        """The bytes of an input named as ``list`` names it."""

class Root:
    """An output root (OUT or a review folder): a local folder or
    ``s3://bucket/prefix``. Names are Veil's relative output names."""

    def __init__(self, location: str) -> None: ...
    def write(self, name: str, data: bytes, durable: bool = True) -> None:
        """Writes ``name`` so that it appears only complete; ``durable=False``
        leaves the fsyncs of a local root to a later ``sync()``."""
    def sync(self) -> None:
        """Makes writes and renames done with ``durable=False`` durable."""
    def exists(self, name: str) -> bool: ...
    def read(self, name: str) -> Optional[bytes]: ...
    def rename(self, src: str, dst: str, durable: bool = True) -> None:
        """Moves ``src`` to ``dst``; ``dst`` appears only complete."""
    def write_dicomdir(self, policy: Policy, names: Sequence[str]) -> None:
        """Writes this OUT's DICOMDIR for the outputs ``names``."""
    def remove(self, name: str) -> None: ...
    def claim(self, policy: Policy, force_new_key: bool = False) -> None:
        """Writes or checks the OUT marker as ``veil deid`` does."""
    def record_review(self, out: "Root", policy: Policy, held: Sequence[Tuple[str, str]]) -> None:
        """Adds (name, reason) pairs to this review folder's index for ``out``."""

class Site:
    """A Veil site: ``$VEIL_HOME`` (its keys) and its store (``$VEIL_DB_URL``,
    PostgreSQL, else SQLite in the home). Opening sets up nothing."""

    def __init__(self, home: Optional[str] = None, db: Optional[str] = None) -> None: ...
    def release(
        self,
        recipient: str,
        purpose: str,
        inputs: Sequence[Union[str, "os.PathLike[str]"]],
        out: Union[str, "os.PathLike[str]"],
        operator: Optional[str] = None,
        jobs: int = 1,
    ) -> Dict[str, Any]:
        """``veil release --json``: consent per patient-study, the recipient's
        recipe and key, verification, one ledger entry per decision; returns
        the summary (``release_id``, ``released``, ``refused``,
        ``ledger_positions``, ``exit_code``, ...)."""
    def dry_run(
        self,
        recipient: str,
        purpose: str,
        inputs: Sequence[Union[str, "os.PathLike[str]"]] = ...,
    ) -> Dict[str, Any]:
        """``veil release --dry-run --json``: decisions as counts, nothing
        written or logged; with no inputs, checks recipient and purpose."""

def study_group(data: bytes, salt: bytes) -> str:
    """A keyed digest (``salt``: 32 bytes) of the object's Study Instance UID,
    to group one study's inputs on one worker without moving the UID."""
