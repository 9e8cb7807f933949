"""The part of an input format common to FITS files: recognising one by its HDUs."""

import abc
import os

from qsopipe.pipeline.errors import InputError
from qsopipe.pipeline.input_format import Claim, InputFormat
from qsopipe.pipeline.sdss.fitsfile import open_fits


class FitsFormat(InputFormat):
    """An InputFormat whose files are FITS; subclasses say how to find the plate unit in an open file."""

    def claim_content(self, path):
        path = os.fspath(path)
        try:
            with open_fits(path) as fits:
                key = self.content_key(path, fits)
        except InputError:
            return None
        return Claim(self, *key)

    @abc.abstractmethod
    def content_key(self, path, fits):
        """(plate, mjd), or (plate, mjd, fiber) for one-spectrum files, of the open fitsio.FITS `fits`.

        Raises InputError, naming `path`, when the HDUs are not this format's.
        """
