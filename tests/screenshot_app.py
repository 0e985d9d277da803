r"""docs/app.png: the upscaling page in headless Chromium, on a blurred photo (`make figures`).

  python tests/screenshot_app.py --checkpoint=workdirs/demo --hr=HR.png --sigma=1.2 \
      --out=docs/app.png

Serves `python -m dssr_jax.app` on a free local port, uploads the Gaussian8 LR of HR at `sigma`
(the blur the network was trained to undo; a sharp photo would show it nothing to do), waits for
the result and saves a screenshot of the page. Uses the tests' browser set-up (tests/browser.py).
"""

import argparse
import pathlib
import sys
import tempfile

# Run as a script (`make figures`): the checkout's dssr_jax beside tests/.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import browser  # pylint: disable=g-import-not-at-top,wrong-import-position


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--checkpoint', required=True)
  parser.add_argument('--hr', required=True)
  parser.add_argument('--sigma', type=float, default=1.2)
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  if browser.missing():
    sys.exit(f'error: {browser.missing()}: {browser.INSTALL}')
  from dssr_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from dssr_jax import image_files  # pylint: disable=g-import-not-at-top
  from dssr_jax import plots  # pylint: disable=g-import-not-at-top
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  _, config, _ = checkpoint.load_params(args.checkpoint)
  with tempfile.TemporaryDirectory() as tmp:
    lr_path = pathlib.Path(tmp) / (pathlib.Path(args.hr).stem + '_blurred.png')
    image_files.write_png(lr_path, plots.degrade_hr(args.hr, int(config['scale']), args.sigma)[1])
    port = browser.free_port()
    argv = [sys.executable, '-m', 'dssr_jax.app', f'--checkpoint={args.checkpoint}',
            f'--port={port}']
    with browser.serving(argv, port, pathlib.Path(tmp) / 'log.txt') as url, \
        sync_playwright() as p:
      b = p.chromium.launch(executable_path=browser.find_chromium(), args=browser.CHROMIUM_ARGS)
      page = b.new_page(viewport={'width': 1280, 'height': 860})
      page.goto(url)
      page.locator('#upload input[type=file]').set_input_files(str(lr_path))
      page.locator(f'#upload [aria-label="{lr_path.name}"]').wait_for()
      page.click('#run')
      page.locator('#download a[download]').wait_for(timeout=600_000)
      page.wait_for_timeout(1000)  # the slider's and the gallery's images finish decoding
      page.screenshot(path=args.out, full_page=True)
      b.close()
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
