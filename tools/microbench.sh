#!/bin/bash
# In-process datapath microbenchmark (ffi-tests/bench_datapath.c): Debian's
# librte_vhost.so.23 against ours, the same binary, LD_LIBRARY_PATH choosing.
#
#   tools/microbench.sh [--rounds R] [--modes "split split-mrg packed packed-mrg"]
#                       [--sizes "64 1518"] [--iters BURSTS] [--ring 256|512|1024]
#                       [--lib DIR] [--callgrind | --budget] [--out DIR]
#
# Timing (default): R rounds (default 5); in each, every mode and size runs
# once with each library, the order alternating per round. Prints the median
# cycles/packet of each library and the ratio rvhost/stock (and the fastest
# run of each, as whole runs are slowed by the machine) as a markdown
# table (the bench's own figure is already a median over chunks of bursts).
#
# --callgrind: one shorter run of each under valgrind's callgrind, counting
# only inside rte_vhost_dequeue_burst/rte_vhost_enqueue_burst (the bench
# toggles collection around the two calls after its warm-up). Instructions
# per packet are repeatable on a noisy machine; cycles are not. The
# callgrind.out files stay in --out DIR for callgrind_annotate.
#
# --budget: the IOTLB work budget of our library alone (bench mode
# iotlb-budget): an IOTLB message's send-to-ack time with 256 rings
# translated and with 256 rings waiting for their areas, and an lcore
# burst that misses with nothing pending and with the pending set filled,
# with the miss requests each caused.
#
# --lib DIR: our library's build directory (default build/, built with meson
# if missing or stale).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=5 modes="split split-mrg packed packed-mrg" sizes=64 iters="" ring=1024
libdir=$root/build callgrind=0 budget=0 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --iters) iters=$2; shift 2 ;;
    --ring) ring=$2; shift 2 ;;
    --lib) libdir=$(realpath -m "$2"); shift 2 ;;
    --callgrind) callgrind=1; shift ;;
    --budget) budget=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

stock_dir=/usr/lib/x86_64-linux-gnu
[ -e $stock_dir/librte_vhost.so.23 ] || { echo "Debian's librte_vhost.so.23 is not installed" >&2; exit 2; }

# Our library: configure if needed, then let meson/cargo decide what to rebuild.
if [ "$libdir" = "$root/build" ]; then
  [ -e build/build.ninja ] || meson setup build >/dev/null
  meson compile -C build >/dev/null
fi
[ -e "$libdir/librte_vhost.so.23" ] || { echo "no librte_vhost.so.23 in $libdir" >&2; exit 2; }

if [ $callgrind = 1 ] && ! command -v valgrind >/dev/null; then
  echo "installing valgrind" >&2
  apt-get install -y -q valgrind >/dev/null
fi
bench=$root/ffi-tests/out/bench_datapath
make -s -C ffi-tests out/bench_datapath
# Built before valgrind/callgrind.h was installed: rebuild with the macros.
if [ $callgrind = 1 ] && ! "$bench" --has-callgrind-macros 2>/dev/null; then
  [ -e /usr/include/valgrind/callgrind.h ] || { echo "valgrind/callgrind.h missing" >&2; exit 2; }
  make -s -B -C ffi-tests out/bench_datapath
fi

if [ $budget = 1 ]; then
  LD_LIBRARY_PATH=$libdir timeout 900 "$bench" iotlb-budget --ring "$ring" | grep '^iotlb-budget'
  exit "${PIPESTATUS[0]}"
fi

[ -n "$out" ] || out=$(mktemp -d /tmp/rvhost-microbench.XXXXXX)
mkdir -p "$out"
log=$out/runs.log
: >"$log"

# run LABEL DIR MODE SIZE ITERS [WRAPPER...]: one bench run; prints its result line.
run() {
  local label=$1 dir=$2 mode=$3 size=$4 n=$5 line
  shift 5
  local env=()
  [ "$dir" = "$stock_dir" ] || env=(LD_LIBRARY_PATH="$dir")
  if ! line=$(env "${env[@]}" timeout 900 "$@" "$bench" "$mode" --size "$size" --iters "$n" --ring "$ring" \
                2>>"$log" | tee -a "$log" | grep "^$mode "); then
    echo "bench failed: $label $mode size=$size (see $log)" >&2
    exit 1
  fi
  # The library actually mapped must be the one asked for.
  case $line in
    *" lib=$(realpath "$dir/librte_vhost.so.23")") ;;
    *) echo "wrong library loaded for $label: $line" >&2; exit 1 ;;
  esac
  echo "$line"
}

field() { sed -n "s|.* $1=\([^ ]*\).*|\1|p"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minimum() { sort -g | head -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
if [ $callgrind = 0 ]; then
  n=${iters:-200000}
  declare -A res last
  for ((r = 0; r < rounds; r++)); do
    for size in $sizes; do
      for mode in $modes; do
        order="stock rvhost"
        [ $((r % 2)) = 0 ] || order="rvhost stock"
        for label in $order; do
          dir=$stock_dir
          [ $label = stock ] || dir=$libdir
          line=$(run $label "$dir" "$mode" "$size" "$n")
          last[$label]=$(echo "$line" | field cycles/pkt)
          res[$label,$mode,$size]+="${last[$label]} "
          res[$label,$mode,$size,deq]+="$(echo "$line" | field deq) "
          res[$label,$mode,$size,enq]+="$(echo "$line" | field enq) "
        done
        echo "round $((r + 1))/$rounds $mode size=$size: stock ${last[stock]} rvhost ${last[rvhost]} cycles/pkt" >&2
      done
    done
  done
  echo
  echo "In-process datapath, cycles/packet (dequeue 32 from guest TX + enqueue to guest RX), median of $rounds rounds"
  echo "of $n bursts each; $ring-entry rings; $cpu, $(nproc) vCPUs; $(date -u +%Y-%m-%d)."
  echo
  echo "The machine's noise slows whole runs (both libraries alike), so the fastest run of each is shown too."
  echo
  echo "| mode | size | stock cyc/pkt | rvhost cyc/pkt | ratio rvhost/stock | stock deq / enq | rvhost deq / enq | fastest run: stock / rvhost | ratio |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for size in $sizes; do
    for mode in $modes; do
      declare -A m=()
      for label in stock rvhost; do
        for k in "" ,deq ,enq; do
          m[$label$k]=$(tr ' ' '\n' <<<"${res[$label,$mode,$size$k]}" | grep . | median)
        done
        m[$label,min]=$(tr ' ' '\n' <<<"${res[$label,$mode,$size]}" | grep . | minimum)
      done
      printf '| %s | %s | %.1f | %.1f | %s | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f | %s |\n' "$mode" "$size" \
        "${m[stock]}" "${m[rvhost]}" "$(ratio "${m[rvhost]}" "${m[stock]}")" "${m[stock,deq]}" "${m[stock,enq]}" \
        "${m[rvhost,deq]}" "${m[rvhost,enq]}" "${m[stock,min]}" "${m[rvhost,min]}" \
        "$(ratio "${m[rvhost,min]}" "${m[stock,min]}")"
    done
  done
  echo
  echo "every run: $log"
else
  n=${iters:-4096}
  declare -A ir
  for size in $sizes; do
    for mode in $modes; do
      for label in stock rvhost; do
        dir=$stock_dir
        [ $label = stock ] || dir=$libdir
        f=$out/callgrind.$label.$mode.$size.out
        run $label "$dir" "$mode" "$size" "$n" valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no \
          --callgrind-out-file="$f" >/dev/null
        ann=$(callgrind_annotate --inclusive=yes --auto=no "$f" 2>/dev/null)
        for fn in dequeue enqueue; do
          v=$(awk -v fn=":rte_vhost_${fn}_burst" '{ i = index($0, fn); r = substr($0, i + length(fn)) } i && (r == "" || r ~ /^ \[/) { gsub(",", "", $1); print $1; exit }' <<<"$ann")
          [ -n "$v" ] || { echo "no rte_vhost_${fn}_burst in $f" >&2; exit 1; }
          ir[$label,$mode,$size,$fn]=$(awk -v v="$v" -v p=$((n * 32)) 'BEGIN { printf "%.1f", v / p }')
        done
        ir[$label,$mode,$size]=$(awk -v a="${ir[$label,$mode,$size,dequeue]}" -v b="${ir[$label,$mode,$size,enqueue]}" \
          'BEGIN { printf "%.1f", a + b }')
        echo "$label $mode size=$size: ${ir[$label,$mode,$size]} instructions/packet ($f)" >&2
      done
    done
  done
  echo
  echo "Instructions per packet inside rte_vhost_dequeue_burst + rte_vhost_enqueue_burst (callgrind, inclusive),"
  echo "$n bursts of 32 after the warm-up; $ring-entry rings; $(date -u +%Y-%m-%d)."
  echo
  echo "| mode | size | stock Ir/pkt | rvhost Ir/pkt | ratio rvhost/stock | stock deq / enq | rvhost deq / enq |"
  echo "|---|---|---|---|---|---|---|"
  for size in $sizes; do
    for mode in $modes; do
      printf '| %s | %s | %s | %s | %s | %s / %s | %s / %s |\n' "$mode" "$size" "${ir[stock,$mode,$size]}" \
        "${ir[rvhost,$mode,$size]}" "$(ratio "${ir[rvhost,$mode,$size]}" "${ir[stock,$mode,$size]}")" \
        "${ir[stock,$mode,$size,dequeue]}" "${ir[stock,$mode,$size,enqueue]}" \
        "${ir[rvhost,$mode,$size,dequeue]}" "${ir[rvhost,$mode,$size,enqueue]}"
    done
  done
  echo
  echo "profiles: $out/callgrind.*.out (callgrind_annotate --inclusive=yes FILE)"
fi
