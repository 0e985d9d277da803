"""Y-channel PSNR and SSIM as the blind-SR literature computes them (docs/design.md section 4).

Both take uint8 RGB images (SR already clipped and rounded to 8 bits), convert to BT.601
studio-range Y as a float in [16, 235] (not rounded), crop `crop` pixels from every border and
compare in float64. SSIM is scikit-image's `structural_similarity` with the Gaussian-window
settings of Wang et al. (11x11, sigma 1.5, population statistics), which equals the MATLAB
`ssim_index` that the field's scripts use; tests/test_metrics.py checks it against a direct
implementation of the formula. numpy and scikit-image only (no tensorflow).
"""

import numpy as np

# BT.601 studio-range luma from RGB in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def _check(a: np.ndarray, b: np.ndarray, crop: int, fn: str):
  a, b = np.asarray(a), np.asarray(b)
  for name, x in (('a', a), ('b', b)):
    if x.dtype != np.uint8:
      raise ValueError(f'{fn}: {name} must be uint8 (round SR to 8 bits first), got {x.dtype}')
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[2] in (1, 3))):
      raise ValueError(f'{fn}: {name} must be HxW or HxWx3, got shape {x.shape}')
  if a.shape[:2] != b.shape[:2]:
    raise ValueError(f'{fn}: a and b differ in size: {a.shape} vs {b.shape}')
  crop = int(crop)
  if crop < 0:
    raise ValueError(f'{fn}: crop must be >= 0, got {crop}')
  h, w = a.shape[:2]
  if h - 2 * crop < 1 or w - 2 * crop < 1:
    raise ValueError(f'{fn}: crop {crop} leaves nothing of a {h}x{w} image')
  return a, b, crop


def rgb_to_y(img: np.ndarray, grey_as_y: bool = False) -> np.ndarray:
  """Float64 luma of a uint8 image.

  Args:
    img: uint8 HxWx3 RGB (or HxW / HxWx1 grey).
    grey_as_y: False (the authors' way): BT.601 studio-range Y in [16, 235]; a grey image is treated
      as RGB with R=G=B, so Y = 219 g / 255 + 16. True (the MATLAB scripts' way for greyscale HR):
      full-range luma on [0, 255] with the same proportions, which is the grey value itself for an
      image with R=G=B.
  """
  x = np.asarray(img).astype(np.float64)
  if x.ndim == 3 and x.shape[2] == 1:
    x = x[:, :, 0]
  if x.ndim == 2:
    x = np.repeat(x[:, :, None], 3, axis=2)
  y = x @ (_Y_WEIGHTS / 255.0)
  if grey_as_y:
    return y * (255.0 / 219.0)
  return y + 16.0


def _cropped_y(a, b, crop, grey_as_y):
  ya, yb = rgb_to_y(a, grey_as_y), rgb_to_y(b, grey_as_y)
  if crop:
    ya, yb = ya[crop:-crop, crop:-crop], yb[crop:-crop, crop:-crop]
  return ya, yb


def psnr_y(a: np.ndarray, b: np.ndarray, crop: int, grey_as_y: bool = False) -> float:
  """PSNR in dB between the Y channels of two uint8 RGB images, `crop` border pixels removed.

  Identical images give inf.
  """
  a, b, crop = _check(a, b, crop, 'psnr_y')
  return _psnr(*_cropped_y(a, b, crop, grey_as_y))


def psnr_rgb(a: np.ndarray, b: np.ndarray, crop: int) -> float:
  """PSNR in dB over R, G and B of two uint8 HxWx3 images, `crop` border pixels removed (the
  authors' test script prints it beside the Y-PSNR). Identical images give inf."""
  a, b, crop = _check(a, b, crop, 'psnr_rgb')
  if a.ndim != 3 or a.shape != b.shape or a.shape[2] != 3:
    raise ValueError(f'psnr_rgb: need two HxWx3 images of one size, got {a.shape} and {b.shape}')
  h, w = a.shape[:2]
  a, b = (x[crop:h - crop, crop:w - crop].astype(np.float64) for x in (a, b))
  return _psnr(a, b)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a - b) ** 2)
  if mse == 0:
    return float('inf')
  return float(10.0 * np.log10(255.0 ** 2 / mse))


def ssim_y(a: np.ndarray, b: np.ndarray, crop: int, grey_as_y: bool = False) -> float:
  """SSIM between the Y channels of two uint8 RGB images, `crop` border pixels removed.

  Gaussian 11x11 window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, population (co)variances,
  'valid' windows only, mean over the map.
  """
  from skimage.metrics import structural_similarity  # pylint: disable=g-import-not-at-top
  a, b, crop = _check(a, b, crop, 'ssim_y')
  ya, yb = _cropped_y(a, b, crop, grey_as_y)
  if min(ya.shape) < 11:
    raise ValueError(f'ssim_y: the cropped image {ya.shape} is smaller than the 11x11 window')
  return float(structural_similarity(
      ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0))
