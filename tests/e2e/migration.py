#!/usr/bin/env python3
"""Live migration of a Linux guest between two QEMUs, each with a vhost-user
virtio-net NIC served by its own dpdk-testpmd (net_vhost, icmpecho) loaded
with the library under test; run against stock DPDK and ours (ours must pass).

The guest (guest-image.sh's "stream" image) runs rvstream (guest/rvstream.c):
ICMP echo requests whose 1180-1400-byte payloads are a deterministic function
of their sequence number, 200 a second, echoed by testpmd, so the back-end
keeps writing known bytes into the guest's receive buffers. The guest leaves
the replies queued in its socket -- in the very pages the back-end wrote --
for 1.5 s before it compares each byte for byte with the payload regenerated
from its sequence number, so the packets written around the switch-over are
checked in the destination's copy of guest RAM. A page the source back-end
wrote without logging it, or one the destination back-end used before
postcopy delivered it, shows up as bad, duplicated (an older packet still in
the page) or lost packets. The guest also reports the sum of the CRC-32s of
the payloads it found good and the sequence numbers it never saw; this script
recomputes that sum from its own copy of the generator (vm.py). The payloads
are all too large for virtio-net's build_skb path and the guest boots with
init_on_alloc=0, so the guest CPU never writes the receive buffers' pages
itself: otherwise QEMU's own dirty tracking would re-send them and hide a
back-end that does not log its writes. In the background the guest pings
10.0.0.1 four times every few seconds.

Cases (each: migration completes per the source's query-migrate, the
destination runs, the guest keeps streaming and answering pings through the
destination's back-end, no bad or duplicated packet, at most 16 lost, the
guest's digest equals the host's):
  precopy            guest RAM on memory-backend-memfd (4 KiB pages),
                     max-bandwidth 16 MiB/s: several passes (dirty syncs)
                     while the back-end writes.
  postcopy, memfd    postcopy-ram on both sides, migrate-start-postcopy right
                     after migrate with almost nothing sent (max-bandwidth
                     1000 B/s); the destination's net_vhost has
                     postcopy-support=1. Once its device is up, the
                     destination back-end writes 256 packets (testpmd
                     tx_first, UDP the guest drops) into the receive buffers
                     the guest had posted on the source, while the
                     background transfer trickles (100 B/s) for 5 s, then it
                     echoes the stream; the rest of RAM follows at full speed.
                     The destination QEMU's trace events
                     postcopy_request_shared_page (a fault QEMU read from the
                     back-end's userfaultfd and requested from the source)
                     are counted and must be > 0.
  postcopy, hugetlbfs the same with guest RAM in /dev/hugepages (2 MiB pages,
                     300 reserved); the back-end's faults are counted only
                     (QEMU's own loading of the rings and the guest's first
                     steps usually bring in the huge pages it writes).
Both testpmds run with --no-mlockall: testpmd's default mlockall(MCL_FUTURE)
populates all of guest memory when the back-end maps it, and postcopy then
fails on the destination with "postcopy_place_page: File exists" (stock DPDK
as ours). The source back-end's forwarding lcore runs on CPU 1, the
destination's on CPU 0; the source stops forwarding once the guest has left.
KVM if the qemu_guest.py probe boots a kernel under it, else TCG.

Knobs (not for CI): RVHOST_SABOTAGE=dirty-log|no-uffd preloads sabotage.c
into both testpmds to show the checks fail when the dirty log or userfaultfd
is broken; RVHOST_KEEP=1 keeps consoles, testpmd logs and traces;
RVHOST_TRACE="ev* ..." adds QEMU trace events on the destination;
RVHOST_EAL="..." adds EAL arguments (e.g. --log-level=lib.vhost.config:debug);
RVHOST_PRELOAD=x.so preloads a shim of one's own into both testpmds.
usage: migration.py [LIBDIR] [--cases precopy,memfd,hugetlbfs]"""

import argparse
import os
import re
import subprocess
import tempfile
import time

from qemu_guest import probe_kvm
from testpmd import (Testpmd, expected_library, port_stats, reserve_hugepages, resolve_libdir,
                     run_differential)
from vm import HERE, Qemu, build_stream_image, check_stream, stream_reports

PPS = 200                 # stream packets a second
HOLD_MS = 1500            # how long the guest leaves received packets unread
MAX_MISSING = 16          # packets allowed lost at the switch-over
POSTCOPY_TRICKLE = 100    # bytes/s of background transfer right after the switch
POSTCOPY_TRICKLE_SECONDS = 5
HUGEPAGES = 300           # two 256 MiB guests on 2 MiB pages, and a margin
KEEP = os.environ.get("RVHOST_KEEP") == "1"
SABOTAGE = os.environ.get("RVHOST_SABOTAGE")
EXTRA_TRACE = os.environ.get("RVHOST_TRACE", "").split()  # more QEMU trace events, destination


def sabotage_env():
    if os.environ.get("RVHOST_PRELOAD"):  # a debugging shim of one's own
        return {"LD_PRELOAD": os.environ["RVHOST_PRELOAD"]}
    if not SABOTAGE:
        return None
    so = "/tmp/rvhost-sabotage.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", so, os.path.join(HERE, "sabotage.c"), "-ldl"],
                   check=True)
    return {"LD_PRELOAD": so, "RVHOST_SABOTAGE": SABOTAGE}


def start_testpmd(tag, libdir, sock, fwd_lcore, vdev_extra=""):
    main = 1 - fwd_lcore
    eal = ["-l", "0,1", "--main-lcore", str(main), "--no-huge", "-m", "512", "--no-pci",
           f"--file-prefix=rvh-mig-{tag}-{os.getpid()}", "--vdev", f"net_vhost0,iface={sock},queues=1{vdev_extra}"]
    eal += os.environ.get("RVHOST_EAL", "").split()  # e.g. --log-level=lib.vhost.config:debug
    # --no-mlockall: testpmd's default mlockall(MCL_FUTURE) makes the
    # back-end's mmap of guest memory populate every page of it, so the
    # destination QEMU's first UFFDIO_COPY of a page that had not arrived
    # fails with EEXIST ("postcopy_place_page: File exists") and postcopy
    # pauses, with stock DPDK as with ours.
    pmd = Testpmd(f"mig-{tag}", eal, ["--nb-cores=1", "--total-num-mbufs=8192", "--no-mlockall"], libdir=libdir,
                  env=sabotage_env())
    pmd.wait_for(r"testpmd>", 60)
    pmd.cmd("set fwd icmpecho", expect="forwarding mode")
    return pmd


def wait_migration(qmp, timeout, dst=None):
    """Polls the source's query-migrate until completed; returns its last
    answer and the statuses seen."""
    end = time.time() + timeout
    seen = []
    while time.time() < end:
        info = qmp.cmd("query-migrate")
        st = info.get("status")
        if not seen or seen[-1] != st:
            seen.append(st)
        if st == "completed":
            return info, seen
        if st in ("failed", "cancelled", "postcopy-paused"):
            why = dst.stderr().strip()[-600:] if dst else ""
            raise RuntimeError(f"migration {st}: {info.get('error-desc', '')} (statuses {seen}); "
                               f"destination QEMU: {why or '-'}")
        time.sleep(0.25)
    raise TimeoutError(f"migration not completed within {timeout} s (statuses {seen})")


def run_case(libdir, accel, case, guest=None):
    """One migration; `guest` overrides the guest's QEMU settings (viommu.py):
    machine (the -machine/-cpu arguments), extra (more QEMU arguments),
    net (virtio-net-pci properties), bus, append (kernel command line),
    vdev (net_vhost arguments of both back-ends)."""
    g = {"machine": accel[0], "extra": [], "net": "", "bus": None, "append": "", "vdev": ""}
    g.update(guest or {})
    postcopy = case != "precopy"
    tmp = tempfile.mkdtemp(prefix="rvhost-mig-")
    src_sock, dst_sock, mig_sock = (os.path.join(tmp, n) for n in ("src.sock", "dst.sock", "mig.sock"))
    trace = os.path.join(tmp, "dst.trace")
    if case == "hugetlbfs":
        if not reserve_hugepages(HUGEPAGES):
            return False, f"cannot reserve {HUGEPAGES} hugepages"
        mem = "memory-backend-file,id=mem,size=256M,mem-path=/dev/hugepages,share=on"
    else:
        mem = "memory-backend-memfd,id=mem,size=256M,share=on"
    append = f"init_on_alloc=0 rvmode=stream rvpps={PPS} rvhold={HOLD_MS} {g['append']}".strip()
    src_pmd = dst_pmd = src = dst = None
    t0 = time.time()
    try:
        src_pmd = start_testpmd("src", libdir, src_sock, fwd_lcore=1, vdev_extra=g["vdev"])
        dst_pmd = start_testpmd("dst", libdir, dst_sock, fwd_lcore=0,
                                vdev_extra=g["vdev"] + (",postcopy-support=1" if postcopy else ""))
        src_pmd.cmd("start", expect="forwarding")
        qemu_args = {"net": g["net"], "extra": g["extra"], "netdev_bus": g["bus"]}
        src = Qemu("mig-src", g["machine"], mem, src_sock, append, **qemu_args)
        dst = Qemu("mig-dst", g["machine"], mem, dst_sock, append, incoming="defer", **qemu_args,
                   trace=((trace, ["postcopy_request_shared_page*", "vhost_user_postcopy_fault_handler_found"]
                           + EXTRA_TRACE)
                          if postcopy else None))
        sq, dq = src.connect(), dst.connect()
        # The stream runs and has been checked a few times before migrating.
        src.wait_reports(3, 150)
        before = stream_reports(src.console())[-1]
        problems = []
        if before["good"] == 0 or before["bad"]:
            # Migrated all the same, to see what becomes of it.
            problems.append(f"stream broken before migration (good {before['good']}, bad {before['bad']}, "
                            f"sent {before['sent']})")
        caps = [{"capability": "postcopy-ram", "state": True}] if postcopy else []
        for q in (sq, dq):
            if caps:
                q.cmd("migrate-set-capabilities", capabilities=caps)
        if postcopy:
            sq.cmd("migrate-set-parameters", **{"max-postcopy-bandwidth": POSTCOPY_TRICKLE})
        # Precopy: slow enough to take several passes while the back-end
        # writes (each pass re-sends what the dirty log reported). Postcopy:
        # next to nothing before the switch, so most pages are missing when
        # the destination starts.
        sq.cmd("migrate-set-parameters", **{"max-bandwidth": 1000 if postcopy else 16 << 20, "downtime-limit": 300})
        dq.cmd("migrate-incoming", uri=f"unix:{mig_sock}")
        if not postcopy:
            dst_pmd.cmd("start", expect="forwarding")
        t_mig = time.time()
        sq.cmd("migrate", uri=f"unix:{mig_sock}")
        if postcopy:
            sq.cmd("migrate-start-postcopy")
            # The source's back-end has nothing left to do once the guest
            # runs on the destination: its forwarding core would only take
            # a CPU from the destination's QEMU and back-end.
            end = time.time() + 60
            while sq.cmd("query-migrate")["status"] not in ("postcopy-active", "completed", "failed",
                                                            "postcopy-paused"):
                if time.time() > end:
                    break
                time.sleep(0.1)
            src_stats = port_stats(src_pmd)
            src_pmd.cmd("stop", expect=r"Done\.")
            # As soon as the destination's device is up, its back-end writes
            # 256 packets (tx_first: 8 bursts of testpmd's UDP, which the
            # guest ignores) into every receive buffer the guest had posted
            # on the source, in pages that have mostly not arrived yet; then
            # it echoes the stream.
            dst_pmd.wait_for(r"Port 0: link state change event", 60)
            dst_pmd.cmd("start tx_first 8", expect="forwarding")
            # While the background transfer only trickles, every page the
            # guest or the destination back-end touches first has to be
            # requested; then the rest is sent at full speed.
            time.sleep(POSTCOPY_TRICKLE_SECONDS)
            sq.cmd("migrate-set-parameters", **{"max-postcopy-bandwidth": 256 << 20})
        info, statuses = wait_migration(sq, 300, dst)
        t_done = time.time()
        dst_state = dq.cmd("query-status")["status"]
        if not postcopy:
            src_stats = port_stats(src_pmd)
        src_lib, dst_lib = src_pmd.mapped_vhost_library(), dst_pmd.mapped_vhost_library()
        src.quit()
        if not postcopy:
            src_pmd.cmd("stop", expect=r"Done\.")
        # After migration: the guest keeps streaming and pinging through the
        # destination (its console is the destination's serial file).
        mark = len(dst.console())
        try:
            dst.wait_reports(4, 90, start=mark)
            dst.wait_console(r"GUEST-PING: \d+ packets transmitted, [34] packets received", 60, start=mark)
        except (TimeoutError, RuntimeError) as e:
            problems.append(f"after migration: {str(e)[:600]}")
        after = stream_reports(dst.console())
        dst_stats = port_stats(dst_pmd)
        last = after[-1] if after else None
        ping_after = re.findall(r"GUEST-PING: (\d+) packets transmitted, (\d+) packets received",
                                dst.console()[mark:])
        if dst_state != "running":
            problems.append(f"destination is {dst_state}")
        if src_lib != expected_library(libdir) or dst_lib != expected_library(libdir):
            problems.append(f"back-ends mapped {src_lib} and {dst_lib}")
        if not last:
            problems.append("no stream report from the destination")
        else:
            problems += check_stream(last, MAX_MISSING)
            if last["good"] < before["good"] + 3 * PPS:
                problems.append(f"stream did not go on after migration ({before['good']} -> {last['good']} good)")
        if not any(int(r) >= 3 for _, r in ping_after):
            problems.append(f"pings after migration: {ping_after or 'none'}")
        if dst_stats["rx_packets"] == 0 or dst_stats["tx_packets"] == 0:
            problems.append(f"destination testpmd forwarded nothing: {dst_stats}")
        bad_lines = re.findall(r"STREAM-(?:BAD|DUP).*", src.console() + dst.console())
        if bad_lines:
            problems.append("; ".join(bad_lines[:3]))
        ram = info.get("ram", {})
        detail = (f"{accel[1].split(' ')[0]}; migration {t_done - t_mig:.0f} s ({'>'.join(statuses)}), "
                  f"total-time {info.get('total-time')} ms, downtime {info.get('downtime')} ms, "
                  f"{ram.get('transferred', 0) >> 20} MiB sent, {ram.get('dirty-sync-count')} syncs")
        if postcopy:
            text = open(trace, errors="replace").read() if os.path.exists(trace) else ""
            shared = len(re.findall(r"^postcopy_request_shared_page ", text, re.M))
            present = len(re.findall(r"^postcopy_request_shared_page_present ", text, re.M))
            found = len(re.findall(r"^vhost_user_postcopy_fault_handler_found ", text, re.M))
            detail += (f", postcopy-requests {ram.get('postcopy-requests')}; destination back-end faults "
                       f"(QEMU trace): {found} read from its userfaultfd, {shared} requested from the source, "
                       f"{present} already there")
            # With 2 MiB pages, QEMU's own loading of the rings' page and the
            # guest's first steps usually bring in the huge pages the
            # back-end writes: counted, not required.
            if shared == 0 and case == "memfd":
                problems.append("no fault of the destination back-end was requested from the source "
                                "(postcopy_request_shared_page)")
        if last:
            detail += (f"; stream: {before['good']} good before, {last['good']} after "
                       f"({last['bytes'] >> 10} KiB, digest {last['dig']:#x}), {last['nmiss']} lost, "
                       f"{last['bad']} bad")
        detail += (f"; pings after (answered/sent): {' '.join(f'{r}/{t}' for t, r in ping_after) or '-'}"
                   f"; testpmd src rx {src_stats['rx_packets']} dst rx {dst_stats['rx_packets']}"
                   f" tx {dst_stats['tx_packets']}; {time.time() - t0:.0f} s in all")
        if problems:
            detail += "; PROBLEMS: " + "; ".join(problems)
            if KEEP:
                detail += f"; logs in {tmp}, {src.serial}, {dst.serial}, {src_pmd.log_path}, {dst_pmd.log_path}"
        return not problems, detail
    except Exception as e:  # a QEMU or testpmd that died says why in its own output
        why = [f"{type(e).__name__}: {str(e)[:600]}"]
        for q in (src, dst):
            if q and q.stderr().strip() and q.stderr().strip()[-200:] not in why[0]:
                why.append(f"{q.tag} QEMU: {q.stderr().strip()[-400:]}")
        for pmd in (src_pmd, dst_pmd):
            if pmd and pmd.p.poll() is not None:
                why.append(f"{pmd.name} testpmd exited ({pmd.p.returncode}): {pmd.output().strip()[-300:]}")
        return False, "; ".join(why)
    finally:
        for q in (src, dst):
            if q:
                q.cleanup(keep=KEEP)
        for pmd in (src_pmd, dst_pmd):
            if pmd:
                pmd.stop()
                if not KEEP:
                    try:
                        os.unlink(pmd.log_path)
                    except OSError:
                        pass
        if not KEEP:
            for f in (src_sock, dst_sock, mig_sock, trace):
                try:
                    os.unlink(f)
                except OSError:
                    pass
            try:
                os.rmdir(tmp)
            except OSError:
                pass


CASES = {"precopy": "precopy, memfd guest RAM",
         "memfd": "postcopy, memfd guest RAM (4 KiB pages)",
         "hugetlbfs": "postcopy, hugetlbfs guest RAM (2 MiB pages)"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("libdir", nargs="?")
    ap.add_argument("--cases", default=",".join(CASES))
    a = ap.parse_args()
    ours = resolve_libdir(a.libdir)
    build_stream_image()
    accel = probe_kvm()
    print(f"accelerator: {accel[1]}" + (f"; SABOTAGE={SABOTAGE}" if SABOTAGE else ""), flush=True)
    cases = [(f"migration: {CASES[c]}", lambda libdir, c=c: run_case(libdir, accel, c))
             for c in a.cases.split(",")]
    run_differential(cases, ours)


if __name__ == "__main__":
    main()
