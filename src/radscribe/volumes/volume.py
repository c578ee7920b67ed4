"""CT/MR volumes and label maps: reading (NIfTI, DICOM series), and one display orientation.

Every :class:`Volume` holds its voxels with an ``affine`` from voxel index (i, j, k) to patient
millimetres in RAS+ (+x toward the patient's Right, +y Anterior, +z Superior: nibabel's convention).
DICOM positions (LPS+) are converted on reading.

:func:`to_display` reorients a volume (and its label map) so that axis 0 runs toward the patient's
left, axis 1 toward posterior and axis 2 toward superior. An axial slice ``data[:, :, k].T`` is then
in the radiological convention: patient right on the image's left, anterior at the top, whatever
the file's own axis order (LPS, RAS, flipped or permuted), with the spacing permuted alongside.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# Display orientation of each array axis, as the sign along the RAS world axis it follows:
# axis 0 -> patient left (-x), axis 1 -> posterior (-y), axis 2 -> superior (+z).
_DISPLAY_SIGNS = (-1.0, -1.0, 1.0)


class VolumeError(ValueError):
    """A volume or label map that cannot be read or used; the message names the file and the problem."""


@dataclass
class Volume:
    """Voxels (i, j, k) of one scan or label map; ``affine`` maps (i, j, k, 1) to RAS+ millimetres."""

    data: np.ndarray
    affine: np.ndarray
    path: Path
    modality: str | None = None  # "CT" or "MR" when the file says so

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Millimetres between neighbouring voxels along i, j, k."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.data.shape[:3])  # type: ignore[return-value]

    def axial(self, k: int) -> np.ndarray:
        """Slice ``k`` as an image (rows, columns); in display orientation rows run anterior -> posterior."""
        return self.data[:, :, k].T


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def volume_id(path: Path) -> str:
    """The study id of a volume file or series folder: its name without the NIfTI/DICOM suffix."""
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, *DICOM_SUFFIXES, ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(path: Path | str) -> Volume:
    """A NIfTI file (``.nii``/``.nii.gz``, needs ``radscribe[volumes]``) or a folder holding one DICOM series."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    if is_nifti(path):
        return read_nifti(path)
    raise VolumeError(f"{path}: not a volume (expected a .nii/.nii.gz file or a folder of one DICOM series)")


def read_nifti(path: Path) -> Volume:
    try:
        import nibabel
    except ImportError:
        raise VolumeError(f"{path}: reading NIfTI needs nibabel: pip install 'radscribe[volumes]'") from None
    try:
        image = nibabel.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for damaged files
        raise VolumeError(f"{path}: cannot read as NIfTI ({type(error).__name__}: {error})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise VolumeError(f"{path}: the header's affine is singular or not finite; cannot place the voxels")
    return Volume(data, affine, path)


def read_dicom_series(folder: Path) -> Volume:
    """One DICOM series from a folder: slices sorted by position along the slice normal, HU via rescale."""
    try:
        import pydicom
    except ImportError:
        raise VolumeError(f"{folder}: reading DICOM needs pydicom: pip install 'radscribe[dicom]'") from None
    series: dict[str, list] = defaultdict(list)
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            dataset = pydicom.dcmread(file)
        except Exception:  # not DICOM (a README, a thumbnail): not part of the series
            continue
        if "PixelData" in dataset and "ImagePositionPatient" in dataset:
            series[str(dataset.get("SeriesInstanceUID", ""))].append((file, dataset))
    if not series:
        raise VolumeError(f"{folder}: no DICOM image with ImagePositionPatient found")
    if len(series) > 1:
        counts = ", ".join(f"{uid or '(no uid)'}: {len(items)} files" for uid, items in series.items())
        raise VolumeError(f"{folder}: holds {len(series)} series ({counts}); give one folder per series")
    items = next(iter(series.values()))
    first = items[0][1]
    orientation = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    row_direction, column_direction = orientation[:3], orientation[3:]  # along a row (i), down a column (j)
    normal = np.cross(row_direction, column_direction)
    for file, dataset in items:
        if not np.allclose(np.asarray(dataset.ImageOrientationPatient, dtype=np.float64), orientation, atol=1e-4):
            raise VolumeError(f"{file}: ImageOrientationPatient differs from the rest of the series")
    items.sort(key=lambda item: float(np.dot(np.asarray(item[1].ImagePositionPatient, dtype=np.float64), normal)))
    positions = np.array([np.asarray(d.ImagePositionPatient, dtype=np.float64) for _, d in items])
    if len(items) > 1:
        gaps = np.diff(positions @ normal)
        if np.any(gaps < 1e-6):
            duplicate = items[int(np.argmin(gaps)) + 1][0]
            raise VolumeError(f"{duplicate}: two slices share one position (a second series or a duplicate file?)")
        step = (positions[-1] - positions[0]) / (len(items) - 1)
    else:
        step = normal * float(first.get("SliceThickness", 1.0) or 1.0)
    slices = []
    for file, dataset in items:
        try:
            pixels = dataset.pixel_array.astype(np.float32)
        except Exception as error:
            raise VolumeError(f"{file}: cannot decode the pixel data ({type(error).__name__}: {error})") from None
        slope = float(dataset.get("RescaleSlope", 1) or 1)
        intercept = float(dataset.get("RescaleIntercept", 0) or 0)
        slices.append(pixels * slope + intercept)
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise VolumeError(f"{folder}: slices of different sizes {sorted(shapes)}")
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)  # between rows, between columns
    lps = np.eye(4)
    lps[:3, 0] = row_direction * column_spacing
    lps[:3, 1] = column_direction * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    data = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, columns, k) -> (i = column, j = row, k)
    return Volume(data, ras, folder, str(first.get("Modality", "")) or None)


def to_display(volume: Volume) -> Volume:
    """The volume reoriented to (patient left, posterior, superior) axes; see the module docstring."""
    rotation = volume.affine[:3, :3]
    directions = rotation / np.linalg.norm(rotation, axis=0)
    world_of_axis = np.argmax(np.abs(directions), axis=0)
    if sorted(world_of_axis.tolist()) != [0, 1, 2]:
        raise VolumeError(f"{volume.path}: the voxel axes are too oblique to tell axial from coronal/sagittal")
    axis_of_world = [int(np.flatnonzero(world_of_axis == world)[0]) for world in range(3)]
    data = np.transpose(volume.data, axis_of_world)
    affine = volume.affine.copy()
    affine[:, :3] = volume.affine[:, axis_of_world]
    for world in range(3):
        if np.sign(affine[world, world]) != _DISPLAY_SIGNS[world]:
            data = np.flip(data, axis=world)
            affine[:3, 3] += affine[:3, world] * (data.shape[world] - 1)
            affine[:3, world] = -affine[:3, world]
    return replace(volume, data=np.ascontiguousarray(data), affine=affine)


def check_same_grid(volume: Volume, labels: Volume, tolerance_mm: float = 1e-3) -> None:
    """A label map must lie on its volume's voxel grid (same shape, same affine)."""
    if volume.shape != labels.shape:
        raise VolumeError(f"{labels.path}: label map shape {labels.shape} differs from the volume's {volume.shape} ({volume.path})")
    if not np.allclose(volume.affine, labels.affine, atol=tolerance_mm):
        raise VolumeError(f"{labels.path}: label map affine differs from the volume's ({volume.path}); resample it onto the volume first")
