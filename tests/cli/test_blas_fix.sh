# lmgrid corrects a mis-detected OpenBLAS core by re-executing itself with OPENBLAS_CORETYPE.
# The mis-detection is simulated with LMGRID_TEST_BLAS_CORE=Prescott.
. "$(dirname "$0")/lib.sh"
best=$("$BIN" env --format csv --matmul-size 64 | awk -F, '$1=="blas_core_best"{print $2}')
if [ -z "$best" ]; then echo "CPU has neither AVX-512 nor AVX2: nothing to correct"; finish; exit; fi
expect_exit 0 "env with a simulated Prescott detection" -- env -u OPENBLAS_CORETYPE LMGRID_TEST_BLAS_CORE=Prescott "$BIN" env --format csv --matmul-size 256
expect_out "^blas_core,$best" "the core in use is $best"
expect_out "^blas_corrected_by_lmgrid,yes" "env says lmgrid corrected it"
expect_exit 0 "an explicit OPENBLAS_CORETYPE is respected" -- env OPENBLAS_CORETYPE=Prescott LMGRID_TEST_BLAS_CORE=Prescott "$BIN" env --format csv --matmul-size 64
expect_out "^blas_core,Prescott" "user's choice kept"
finish
