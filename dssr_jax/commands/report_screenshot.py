r"""Photographs the viewer of an `eval.py --html` report as headless Chromium shows it.

  python -m dssr_jax.html_report --html=REPORT_DIR --out=report.png [--image=NAME] [--overwrite]

Opens REPORT_DIR/index.html, opens the viewer on the first image whose name starts with --image
(the first row without it) and writes what the reader sees as PNG (the picture in README and
docs/evaluation.md). Needs playwright and chromium (`apt-get install chromium`).
"""

from absl import flags

from dssr_jax import commands
from dssr_jax import html_report

FLAGS = flags.FLAGS
flags.DEFINE_string('html', None, 'A report folder written by eval.py --html.', required=True)
flags.DEFINE_string('out', None, 'The PNG to write.', required=True)
flags.DEFINE_string('image', None, 'Open the viewer on the first image whose name starts with '
                    'this (default: the first row).')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --out.')


def main(argv):
  commands.no_arguments(argv)
  print(html_report.screenshot(FLAGS.html, FLAGS.out, FLAGS.image, overwrite=FLAGS.overwrite))


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
