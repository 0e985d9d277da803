r"""The end of `make demo`: bicubic vs DSSR on the photos the demo did not train on.

  dssr-demo-report --workdir=workdirs/demo

(or `python -m dssr_jax.demo_report ...`). Scores the latest checkpoint in WORKDIR on the held-out
photos under the eight Gaussian8 blurs, writes WORKDIR/demo/results.json and
WORKDIR/demo/comparison.png, and prints the table and the gain over bicubic
(dssr_jax/demo_report.py says what each holds).
"""

from absl import flags

from dssr_jax import commands
from dssr_jax import demo_report

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, "The demo's training workdir (its latest checkpoint is "
                    'scored).', required=True)


def main(argv):
  commands.no_arguments(argv)
  demo_report.report(FLAGS.workdir)


def run() -> None:
  commands.run(main)


if __name__ == '__main__':
  run()
