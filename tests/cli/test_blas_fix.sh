# lmgrid corrects a mis-detected OpenBLAS core by re-executing itself with OPENBLAS_CORETYPE.
# The mis-detection is simulated with LMGRID_TEST_BLAS_CORE=Prescott.
. "$(dirname "$0")/lib.sh"
# The core this CPU should get, from /proc/cpuinfo (independently of lmgrid): SkylakeX with
# AVX-512 F+BW+VL, else Haswell with AVX2 (or AVX-512). Only a CPU with neither skips the test.
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }
expect_exit 0 "env" -- "$BIN" env --format csv --matmul-size 64
best=$(awk -F, '$1=="blas_core_best"{print $2}' "$WORK/out")
blas=$(awk -F, '$1=="blas"{print $2}' "$WORK/out")
if [ "$blas" != openblas ]; then
  # The torch wheel's LibTorch links MKL: no OpenBLAS core to correct, and a simulated
  # mis-detection changes nothing.
  echo "LibTorch's BLAS is '$blas', not OpenBLAS: nothing to correct"
  expect_exit 0 "env with a simulated Prescott detection" -- env -u OPENBLAS_CORETYPE LMGRID_TEST_BLAS_CORE=Prescott "$BIN" env --format csv --matmul-size 64
  expect_out "^blas_corrected_by_lmgrid,no" "no correction without OpenBLAS"
  expect_out "^blas_threads,n/a" "no OpenBLAS pool"
  finish
  exit
fi
if ! has avx2 && ! has avx512f; then
  echo "CPU has neither AVX-512 nor AVX2 (flags in /proc/cpuinfo): nothing to correct"
  check "lmgrid agrees: no better core (got '$best')" -- test -z "$best"
  finish
  exit
fi
cpu_best=Haswell
if has avx512f && has avx512bw && has avx512vl; then cpu_best=SkylakeX; fi
check "env names the best core for this CPU's flags ($cpu_best; lmgrid says '$best')" -- test -n "$best" -a "$best" = "$cpu_best"
expect_exit 0 "env with a simulated Prescott detection" -- env -u OPENBLAS_CORETYPE LMGRID_TEST_BLAS_CORE=Prescott "$BIN" env --format csv --matmul-size 256
expect_out "^blas_core,$best" "the core in use is $best"
expect_out "^blas_corrected_by_lmgrid,yes" "env says lmgrid corrected it"
expect_exit 0 "an explicit OPENBLAS_CORETYPE is respected" -- env OPENBLAS_CORETYPE=Prescott LMGRID_TEST_BLAS_CORE=Prescott "$BIN" env --format csv --matmul-size 64
expect_out "^blas_core,Prescott" "user's choice kept"
# LibTorch sizes only its own pool; lmgrid sizes OpenBLAS's with LMGRID_THREADS too, and the MFU
# peak is recorded for that thread count in the cache.
expect_exit 0 "env at 1 thread" -- env LMGRID_THREADS=1 "$BIN" env --format csv --matmul-size 64
expect_out "^threads,1$" "LibTorch threads 1"
expect_out "^blas_threads,(1|n/a)$" "OpenBLAS threads 1 (or not OpenBLAS)"
expect_out "^mfu_peak_gflops,.*measured, 512\^3 at 1 threads" "MFU peak measured at 1 thread"
check "the peak is cached per thread count" -- grep -qE "	1	[0-9.]+$" "$LMGRID_CACHE/peak_gflops.tsv"
expect_exit 2 "a bad LMGRID_PEAK_GFLOPS is refused" -- env LMGRID_PEAK_GFLOPS=fast "$BIN" env --matmul-size 64
expect_out "LMGRID_PEAK_GFLOPS='fast' is not a positive number" "says what is wrong"
finish
