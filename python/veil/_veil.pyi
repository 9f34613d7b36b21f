"""Type stubs of the native module ``veil._veil`` (crates/veil-py)."""

import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Union

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
    def deid_bytes(self, data: bytes) -> Result:
        """De-identifies one object; output bytes equal ``veil deid``'s file."""
    def deid_file(
        self, src: Union[str, "os.PathLike[str]"], dst: Union[str, "os.PathLike[str]"]
    ) -> Result:
        """De-identifies ``src``; writes ``dst`` atomically when "written"."""

def verify_bytes(output: bytes, source: Optional[bytes] = None) -> List[Dict[str, str]]:
    """Failing findings of ``veil verify``: dicts with category, place, detector."""

def explain(data: bytes, policy: Policy) -> Dict[str, Any]:
    """``veil explain --json`` as a dict: options, review, decisions."""
