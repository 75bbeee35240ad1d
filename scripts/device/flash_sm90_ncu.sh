#!/usr/bin/env bash
# Run ON THE DEVICE after scripts/device/flash_sm90.sh has built build-device-sm90: Nsight Compute
# counters of the sm_90a flash kernel on chosen rows of the timing table (arguments: "shape mask"
# substrings, e.g. "Wan 1.3B dense"). Full reports in $OUT. SOURCE=1: instead, the source counters
# (per SASS instruction: executed count, stall samples by reason) of each row, as CSV in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp}"
source scripts/device/lib.sh
test=build-device-sm90/flash_sm90_test.0  # the tree kernel, built by flash_sm90.sh
metrics=gpu__time_duration.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
metrics+=,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active
metrics+=,lts__t_sector_hit_rate.pct,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum
metrics+=,lts__t_sectors_srcunit_tex_op_read.sum,sm__cycles_active.avg
for row in "$@"; do
  name=$(echo "$row" | tr -c 'A-Za-z0-9.\n' '_')
  echo "== $row"
  if [ -n "${SOURCE:-}" ]; then
    VDIT_FLASH_SM90_BENCH=1 VDIT_FLASH_SM90_BENCH_ONLY="$row" timeout 200 \
      ncu --clock-control none --kernel-name regex:flash_fwd_sm90_kernel --launch-skip 2 --launch-count 1 \
      --section SourceCounters --section WarpStateStats -f -o "$out/source_$name" "$test" \
      --gtest_filter=FlashSm90.Timing >"$out/ncu_$name.txt" 2>&1 || tail -5 "$out/ncu_$name.txt"
    ncu --import "$out/source_$name.ncu-rep" --page source --csv --print-source sass >"$out/sass_$name.csv" 2>&1 ||
      head -5 "$out/sass_$name.csv"
    rm -f "$out/source_$name.ncu-rep"
    echo "$(wc -l <"$out/sass_$name.csv") lines: sass_$name.csv"
    continue
  fi
  VDIT_FLASH_SM90_BENCH=1 VDIT_FLASH_SM90_BENCH_ONLY="$row" timeout 120 \
    ncu --clock-control none --kernel-name regex:flash_fwd_sm90_kernel --launch-skip 2 --launch-count 1 \
    --metrics "$metrics" --section WarpStateStats "$test" --gtest_filter=FlashSm90.Timing >"$out/ncu_$name.txt" 2>&1
  grep -E "^\s+(gpu__|sm__|lts__|dram__|smsp__)|Stall|stall" "$out/ncu_$name.txt" | grep -v "^\s*----" | head -30
done
