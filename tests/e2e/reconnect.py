#!/usr/bin/env python3
"""DTS 'virtio-user server mode / PVP reconnect' style: traffic must resume
(packet counters grow again) after
  1. the virtio-user front-end is killed and restarted (vhost is the server);
  2. the vhost back-end is killed and restarted (vhost is the client,
     virtio-user the server, as OVS deploys it);
  3. the vhost port is stopped and started again.
Run against stock DPDK and against ours; ours must pass.
usage: reconnect.py [LIBDIR]"""

import sys
import time

from testpmd import Pair, expected_library, port_stats, resolve_libdir, run_differential


def flowing(pair, seconds=2.0):
    """Rx counter growth at the vhost port over a short interval."""
    a = port_stats(pair.vhost)["rx_packets"]
    time.sleep(seconds)
    return port_stats(pair.vhost)["rx_packets"] - a


def kill_restart_virtio(libdir):
    pair = Pair(libdir, ",packed_vq=0,mrg_rxbuf=1", tag="rc1")
    try:
        pair.start()
        assert pair.loaded_library() == expected_library(libdir), "wrong library mapped"
        pair.run_traffic()
        first = flowing(pair)
        pair.virtio.kill()
        pair.vhost.wait_for(r"link state change event", 30)
        pair.start_virtio()
        pair.wait_link()
        pair.virtio.cmd("set fwd mac", expect="forwarding mode")
        pair.virtio.cmd("start tx_first 32", expect="forwarding")
        again = flowing(pair)
        return first > 0 and again > 0, f"before kill +{first}, after restart +{again}"
    finally:
        pair.close()


def kill_restart_vhost(libdir):
    pair = Pair(libdir, ",packed_vq=0,mrg_rxbuf=1", vhost_client=True, tag="rc2")
    try:
        pair.start()
        assert pair.loaded_library() == expected_library(libdir), "wrong library mapped"
        pair.run_traffic()
        first = flowing(pair)
        pair.vhost.kill()
        pair.start_vhost()
        pair.wait_link()
        assert pair.loaded_library() == expected_library(libdir), "wrong library mapped after restart"
        pair.vhost.cmd("set fwd mac", expect="forwarding mode")
        pair.vhost.cmd("start", expect="forwarding")
        # The virtio side's queues were reset by the reconnect: restart it.
        pair.virtio.cmd("stop", expect=r"Done\.")
        pair.virtio.cmd("start tx_first 32", expect="forwarding")
        again = flowing(pair)
        return first > 0 and again > 0, f"before kill +{first}, after restart +{again}"
    finally:
        pair.close()


def port_restart(libdir):
    pair = Pair(libdir, ",packed_vq=1,mrg_rxbuf=1", tag="rc3")
    try:
        pair.start()
        pair.run_traffic()
        first = flowing(pair)
        pair.vhost.cmd("stop", expect=r"Done\.")
        pair.vhost.cmd("port stop 0", expect=r"Done|Stopping")
        time.sleep(1)
        pair.vhost.cmd("port start 0", expect=r"Done|Port 0:")
        time.sleep(1)
        pair.vhost.cmd("start", expect="forwarding")
        pair.virtio.cmd("stop", expect=r"Done\.")
        pair.virtio.cmd("start tx_first 32", expect="forwarding")
        again = flowing(pair)
        return first > 0 and again > 0, f"before +{first}, after port stop/start +{again}"
    finally:
        pair.close()


def main():
    ours = resolve_libdir(sys.argv[1] if len(sys.argv) > 1 else None)
    run_differential([("kill/restart virtio-user (vhost server)", kill_restart_virtio),
                      ("kill/restart vhost (vhost client, virtio-user server)", kill_restart_vhost),
                      ("vhost port stop/start", port_restart)], ours)


if __name__ == "__main__":
    main()
