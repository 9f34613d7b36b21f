from ._veil import (
    KeyFileError as KeyFileError,
    Key as Key,
    NotDicomError as NotDicomError,
    Policy as Policy,
    PolicyError as PolicyError,
    RecipeError as RecipeError,
    Result as Result,
    VeilError as VeilError,
    __version__ as __version__,
    explain as explain,
    verify_bytes as verify_bytes,
)
