"""The scripts in benchmarks/: each runs from the repo root without PYTHONPATH, small, and says
what it measured; variants name execution strategies in `fast.Execution`'s terms."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from dssr_jax import fast

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ('train_step.py', 'infer.py', 'forward.py', 'pipeline.py', 'xplane_summary.py',
           'torch_reference.py', 'bicubic_rows.py', 'tiled_vs_whole.py')
TINY = ['--channels=8', '--struct_blocks=1', '--recon_blocks=1', '--num_steps=2']


def _env():
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  for key in ('PYTHONPATH', 'XLA_FLAGS', 'JAX_COMPILATION_CACHE_DIR'):
    env.pop(key, None)
  return env


def _run(*args, timeout=300):
  """`python ARGS` from the repo root, no PYTHONPATH."""
  return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=timeout)


def test_every_runnable_script_is_listed():
  runnable = {p.name for p in (REPO / 'benchmarks').glob('*.py')
              if "__name__ == '__main__'" in p.read_text()}
  assert runnable == set(SCRIPTS)


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_from_the_repo_root(script):
  proc = _run(f'benchmarks/{script}', '--help', timeout=120)
  assert proc.returncode in (0, 1), proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  out = proc.stdout + proc.stderr
  assert 'usage' in out.lower() or 'flags:' in out, out[-2000:]


@pytest.mark.parametrize('script,args,message', [
    ('forward.py', ['--variant=phase_up=2'], 'an Execution field is 0/1'),
    ('forward.py', ['--variant=execution=fastest'], "execution='fastest' is not one of"),
    ('infer.py', ['--variant=up_impl=phases'], "unknown variant field(s) ['up_impl']"),
    ('infer.py', ['--cases=x8'], "--cases: unknown ['x8']"),
    ('train_step.py', ['--dtypes=float16'], '--dtypes takes a comma-separated list'),
    ('train_step.py', ['--variant=fold_detail_conv=True'], "['fold_detail_conv']"),
])
def test_bad_flags_are_named_without_a_traceback(script, args, message):
  proc = _run(f'benchmarks/{script}', *args, timeout=120)
  assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  assert message in proc.stderr


def test_variants_are_execution_strategies():
  """Hand-written expectations of `common.model_kwargs`: the base, then single fields over it."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  kw = lambda text: common.model_kwargs(common.parse_variant(text), backend='cpu')
  assert kw('') == {'execution': fast.CPU}
  assert kw('execution=plain') == {'execution': fast.Execution(False, False, False, False)}
  assert kw('phase_up=0') == {'execution': fast.Execution(True, False, True, True)}
  assert kw('execution=accelerator,unrolled_steps=0,pointwise_matmul=True,channels=8') == {
      'channels': 8, 'execution': fast.Execution(True, True, False, False)}
  assert common.model_kwargs({}, backend='gpu') == {'execution': fast.ACCELERATOR}
  from benchmarks import forward  # pylint: disable=g-import-not-at-top
  assert forward.default_variants('cpu') == [
      '', 'pointwise_matmul=0', 'phase_up=0', 'banded_bicubic=0', 'unrolled_steps=0',
      'execution=plain']
  assert forward.default_variants('gpu') == ['', 'phase_up=0', 'unrolled_steps=0',
                                             'execution=plain']
  for bad, match in (('scan_unroll=True', 'unknown variant field'),
                     ('execution=CPU', 'is not one of'), ('banded_bicubic=yes', '0/1')):
    with pytest.raises(ValueError, match=match):
      kw(bad)


def test_variant_xla_items_reach_the_child_only(tmp_path, monkeypatch):
  """'xla_*' variant items become that child's XLA_FLAGS (after the caller's), not model fields."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  fields, flags = common.split_variant(common.parse_variant(
      'phase_up=0,xla_gpu_enable_command_buffer=+CONVOLUTION,xla_x=1'))
  assert fields == {'phase_up': 0}
  assert flags == '--xla_gpu_enable_command_buffer=+CONVOLUTION --xla_x=1'
  script = tmp_path / 'child.py'
  script.write_text('import json, os\nprint(json.dumps(os.environ.get("XLA_FLAGS")))\n')
  monkeypatch.setenv('XLA_FLAGS', '--a=1')
  assert common.run_child(str(script), {'xla_flags': flags}) == '--a=1 ' + flags
  assert common.run_child(str(script), {'xla_flags': ''}) == '--a=1'
  # A failing child reports its error line, not JAX's note on filtered frames printed after it.
  script.write_text('import sys\nsys.exit("INTERNAL: graph_.validate()\\n'
                    'For simplicity, JAX has removed its internal frames ...\\n-----")\n')
  assert common.run_child(str(script), {'n': 1}) == {
      'n': 1, 'error': ['INTERNAL: graph_.validate()']}


def test_json_results_are_written_whole_and_never_over_a_file(tmp_path):
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'r.json'
  common.write_json(str(path), [{'a': 1}])
  common.write_json(str(path), [{'a': 1}, {'b': 2}])
  assert json.loads(path.read_text()) == [{'a': 1}, {'b': 2}]
  assert [p.name for p in tmp_path.iterdir()] == ['r.json']  # no temporary file left
  proc = _run('benchmarks/infer.py', f'--json={path}', timeout=120)
  assert proc.returncode == 1 and 'exists; name a new file' in proc.stderr
  assert json.loads(path.read_text()) == [{'a': 1}, {'b': 2}]


def test_train_step_runs_small(tmp_path):
  """benchmarks/train_step.py on a tiny network, one variant (a strategy off and an XLA flag):
  a row with a time and FLOPs, its JSON, and a profile that xplane_summary splits by part."""
  proc = _run('benchmarks/train_step.py', '--scales=2', '--dtypes=float32', '--remat=off', *TINY,
              '--batch=2', '--patch=8', '--steps=2', '--warmup=1',
              '--variant=phase_up=0,xla_cpu_enable_fast_math=false', f'--json={tmp_path / "r.json"}',
              f'--profile={tmp_path / "prof"}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = proc.stdout.splitlines()[1].split()
  assert row[:3] == ['2', 'float32', 'off'] and float(row[3]) > 0 and float(row[4]) > 0
  assert row[-1] == 'phase_up=0,xla_cpu_enable_fast_math=false'
  assert 'device: cpu x1' in proc.stdout
  result, = json.loads((tmp_path / 'r.json').read_text())
  assert result['model']['phase_up'] == 0 and result['model']['channels'] == 8
  assert result['xla_flags'] == '--xla_cpu_enable_fast_math=false'
  assert result['tflop_per_step'] > 0 and result['ms_per_step'] > 0
  folder, = (tmp_path / 'prof').iterdir()
  assert folder.name == 'x2_float32_phase_up_0_xla_cpu_enable_fast_math_false'
  trace, = folder.glob('plugins/profile/*/*.xplane.pb')
  summary = _run('benchmarks/xplane_summary.py', trace, f'--hlo={folder / "optimized_hlo.txt"}')
  assert summary.returncode == 0, summary.stderr[-3000:]
  assert 'backward feat_ext' in summary.stdout and 'forward feat_refine' in summary.stdout


def test_train_step_flops_count_every_recurrent_step_once():
  """XLA's cost analysis counts a rolled loop's body once: the count must come from the steps
  unrolled, whatever remat says (remat keeps the loop rolled), so T=2 costs nearly twice T=1."""
  from benchmarks import train_step  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  kw = dict(scale=2, channels=4, struct_blocks=1, recon_blocks=0, dtype='float32')
  count = lambda **k: train_step.model_flops(dict(kw, **k), default.get_train_config(), 1, 8)
  one, two = count(num_steps=1, remat=False), count(num_steps=2, remat=True)
  assert 1.7 < two / one < 2.0, (one, two)
  assert count(num_steps=2, remat=False) == two


def test_infer_runs_small(tmp_path):
  """benchmarks/infer.py with a tiny network: the cases compiled in parallel into a cache first,
  then timed, one JSON row each with the execution it ran."""
  proc = _run('benchmarks/infer.py', '--cases=x4,tiled2k', '--max_tiles=1', '--tile=128',
              '--repeats=1', '--compile_jobs=2',
              '--variant=channels=8,struct_blocks=1,recon_blocks=1,num_steps=2,execution=plain',
              f'--cache_dir={tmp_path / "cache"}', f'--json={tmp_path / "r.json"}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.startswith('compiled 2 cases, 2 at a time')
  rows = json.loads((tmp_path / 'r.json').read_text())
  assert [r['case'] for r in rows] == ['x4', 'tiled2k']
  assert all(r['s_per_image'] > 0 and r['peak_gb'] > 0 for r in rows)
  assert rows[1]['tiles_run'] == 1 and rows[0]['model']['channels'] == 8
  assert {r['execution'] for r in rows} == {str(fast.PLAIN)}
  assert any((tmp_path / 'cache').iterdir())


def test_forward_ab_runs_small():
  """benchmarks/forward.py: one row per variant with its ratio to the first, the same SR."""
  proc = _run('benchmarks/forward.py', '--scale=2', '--size=12', '--runs=2', *TINY,
              '--variant=', '--variant=execution=plain')
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith(f'(best): {fast.CPU}; compile + first run')
  assert lines[1].startswith(f'execution=plain: {fast.PLAIN}; compile + first run')
  assert float(lines[1].rsplit('max |sr - first| ', 1)[1]) < 1e-5
  rows = {line.split()[0]: line.split() for line in lines if line.startswith(('(best) ', 'exec'))}
  assert rows['(best)'][2] == '1.00' and rows['(best)'][4] == '1.00'
  assert float(rows['execution=plain'][1]) > 0 and float(rows['execution=plain'][2]) > 0
  assert rows['execution=plain'][5:] != [] and len(rows['execution=plain'][5:]) == 2  # per round
  assert 'peak RSS' in lines[-1]


def test_torch_reference_refuses_a_folder_without_the_authors_code(tmp_path):
  """The PyTorch reference benchmark names the missing file before it needs torch at all."""
  proc = _run('benchmarks/torch_reference.py', f'--authors_dir={tmp_path}', '--mode=infer',
              '--scale=2', timeout=60)
  assert proc.returncode != 0
  assert 'dssr_arch.py not found' in proc.stderr and 'Arcananana/DSSR' in proc.stderr


def test_train_step_path_imports_no_tensorflow():
  """The GPU benchmark path (train_step, what its children import) needs no tf/clu/tfds/orbax."""
  code = ('import sys; sys.path.insert(0, ".")\n'
          'from benchmarks import train_step, common\n'
          'from configs import default\n'
          'from dssr_jax import train_lib, losses, optim, fast, model\n'
          'common.model_kwargs({"phase_up": 0}, backend="cpu")\n'
          'print(sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "clu", '
          '"tensorflow_datasets", "orbax"}))')
  proc = _run('-c', code, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == '[]'
