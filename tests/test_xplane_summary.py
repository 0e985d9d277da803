"""benchmarks/xplane_summary.py on a hand-built trace: kernel times summed by kind and by part."""

import gzip

from benchmarks import xplane_summary


def _space(tmp_path):
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  plane = space.planes.add(name='/device:GPU:0')
  for i, name in enumerate(('hlo_op', 'tf_op', 'cudnn-conv-bw-filter.3', 'loop_select_fusion.7',
                            'command_buffer_1')):
    plane.stat_metadata[i + 1].id, plane.stat_metadata[i + 1].name = i + 1, name
  for i, name in enumerate(('sm90_xmma_wgrad_bf16', 'loop_select_fusion_7', 'input_reduce_fusion_9')):
    plane.event_metadata[i + 1].id, plane.event_metadata[i + 1].name = i + 1, name
  line = plane.lines.add(name='Stream #1', timestamp_ns=1000)
  # (kernel, hlo op stat, start ps, duration ps); the third runs inside a command buffer.
  for meta, hlo, start, dur in ((1, 3, 0, 4_000_000), (2, 4, 5_000_000, 1_000_000),
                                (3, 5, 7_000_000, 3_000_000)):
    e = line.events.add(metadata_id=meta, offset_ps=start, duration_ps=dur)
    e.stats.add(metadata_id=1, ref_value=hlo)
  path = tmp_path / 'trace.xplane.pb.gz'
  with gzip.open(path, 'wb') as f:
    f.write(space.SerializeToString())
  hlo = tmp_path / 'hlo.txt'
  hlo.write_text(
      '  %cudnn-conv-bw-filter.3 = (bf16[3,3,8,8]) custom-call(%a), metadata={op_name='
      '"jit(train_step)/transpose(jvp(DSSR))/closed_call/step/feat_ext/block_0/conv1/conv"}\n'
      '  %loop_select_fusion.7 = bf16[8] fusion(%b), metadata={op_name="jit(train_step)/jvp(DSSR)/'
      'eval_jaxpr/step/up/jit(_where)/select_n"}\n'
      '  %input_reduce_fusion.9 = f32[8] fusion(%c), metadata={op_name="jit(train_step)/adam/add"}\n')
  return str(path), str(hlo)


def test_summary_splits_kernel_time(tmp_path, capsys):
  trace, hlo = _space(tmp_path)
  ev = xplane_summary.kernels(xplane_summary.load(trace))
  assert [e[1] for e in ev] == [4_000_000, 1_000_000, 3_000_000]
  xplane_summary.summarize(trace, hlo, steps=1, depth=2)
  out = capsys.readouterr().out
  # 8 us of kernels over a 10 us span.
  assert '3 kernels/step, kernel time 0.01 ms/step, span 0.01 ms/step, busy 80.0%' in out
  rows = {line[:42].strip(): line[42:].split() for line in out.splitlines() if len(line) > 42}
  assert rows['conv weight gradient'][1] == '50.0%'
  assert rows['fusion (elementwise, reductions, layout)'][1] == '50.0%'
  assert rows['backward feat_ext/block_0'][1] == '50.0%'
  assert rows['forward up/select_n'][1] == '12.5%'
  assert rows['optimizer/loss/other'][1] == '37.5%'  # found through the kernel's name


def test_part_names():
  part = xplane_summary.part
  assert part('') == 'unknown'
  assert part('jit(train_step)/jvp(DSSR)/eval_jaxpr/step/spatial_trans1/conv2/conv') == (
      'forward spatial_trans1')
  assert part('jit(train_step)/transpose(jvp(DSSR))/closed_call/step/down/reshape', 2) == (
      'backward down/reshape')
  assert part('jit(train_step)/jvp(DSSR)/conv1/conv_general_dilated') == 'forward conv1'


def test_cpu_thunks_count_once(tmp_path):
  """Without a GPU plane the XLA:CPU thunks are read; wrappers, markers and a while loop (whose
  event encloses its body's thunks) are not counted again."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  plane = space.planes.add(name='/host:CPU')
  names = ('ThunkExecutor::Execute', 'while.3', 'ynn_fusion.1', 'end: ynn_fusion', 'copy_fusion.2')
  for i, name in enumerate(names):
    plane.event_metadata[i + 1].id, plane.event_metadata[i + 1].name = i + 1, name
  line = plane.lines.add(name='tf_XLAEigen/7', timestamp_ns=0)
  for meta, start, dur in ((1, 0, 100), (2, 0, 30), (3, 5, 10), (4, 14, 1), (5, 40, 5)):
    line.events.add(metadata_id=meta, offset_ps=start, duration_ps=dur)
  plane.lines.add(name='python').events.add(metadata_id=5, offset_ps=0, duration_ps=99)
  ev = xplane_summary.kernels(space)
  assert [(e[2], e[1]) for e in ev] == [('ynn_fusion.1', 10), ('copy_fusion.2', 5)]
  assert [xplane_summary.op_kind(e[3], e[2]) for e in ev] == [
      'conv (XLA:CPU)', 'fusion (elementwise, reductions, layout)']
  # XLA:CPU's own conv emitter (no YNNPACK) names the thunk after the jax op.
  assert xplane_summary.op_kind('conv_general_dilated.5', 'conv_general_dilated.5') == (
      'conv (XLA:CPU)')
