"""DICOM files built in memory for the workstation tests: a secondary capture around given pixels."""

from __future__ import annotations

import io


def secondary_capture(pixels: bytes, rows: int, columns: int, *, frames: int = 1, bits_stored: int = 16, deflated: bool = False,
                      **attributes) -> bytes:
    """A DICOM Part 10 file of 16-bit MONOCHROME2 ``pixels`` (``frames`` x ``rows`` x ``columns``), optionally deflated."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    dataset = FileDataset("image.dcm", {}, file_meta=meta, preamble=b"\x00" * 128)
    dataset.SOPClassUID, dataset.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    dataset.Modality, dataset.PhotometricInterpretation = "DX", "MONOCHROME2"
    dataset.Rows, dataset.Columns = rows, columns
    if frames > 1:
        dataset.NumberOfFrames = frames
    dataset.SamplesPerPixel, dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = (
        1, 16, bits_stored, bits_stored - 1, 0)
    for key, value in attributes.items():
        setattr(dataset, key, value)
    dataset.PixelData = pixels
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
