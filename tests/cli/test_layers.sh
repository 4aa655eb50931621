# The layers of core/ include only what docs/architecture.md allows: each folder of
# core/include/lmgrid/ and core/src/ may include its own layer and those listed for it.
# (Config never includes train; store never includes train; report reads only the store.)
. "$(dirname "$0")/lib.sh"
SRC=${LMGRID_SOURCE:?}
declare -A allowed=(
  [base]="base"
  [config]="base config"
  [store]="base config store"
  [report]="base config store report"
  [plugin]="base plugin"
  [nn]="base plugin nn kernels"
  [grid]="base config plugin grid"
  [data]="base data"
  [train]="base config dist kernels plugin store sys train"
  [run]="base dist store run"
  [check]="base plugin train check"
  [sys]="base plugin sys"
  [export]="base config data plugin store train export"
  [dist]="base dist"
)
for layer in $(ls "$SRC/core/include/lmgrid" "$SRC/core/src" | grep -v ':' | grep -v '\.' | sort -u); do
  [ -n "${allowed[$layer]+x}" ] || { fail "folder core/*/$layer is not a known layer (add it to this test and docs/architecture.md)"; continue; }
  used=$(cat "$SRC"/core/include/lmgrid/$layer/*.hpp "$SRC"/core/src/$layer/*.cpp 2>/dev/null |
         grep -oE '#include [<"]lmgrid/[a-z_]+/' | sed -E 's|.*lmgrid/||; s|/$||' | sort -u)
  bad=""
  for u in $used; do [[ " ${allowed[$layer]} " == *" $u "* ]] || bad="$bad $u"; done
  check "layer $layer includes only: ${allowed[$layer]}${bad:+ (also:$bad)}" -- test -z "$bad"
done
# Only the two SDK entry points stay at the top of include/lmgrid/.
top=$(cd "$SRC/core/include/lmgrid" && ls *.hpp | tr '\n' ' ')
check "top-level headers are the SDK entry points only ($top)" -- test "$top" = "nn.hpp plugin.hpp "
finish
