"""Integration tests on real guests: libvirtd, qemu (TCG) and a tiny Debian-kernel guest.

The harness: ``libvirtd.ensure_libvirtd`` brings up the system daemon, ``guest.build_guest``
builds and caches a kernel, initramfs and base disk, ``context_iso.make_context_iso`` writes
a contextualization drive, and ``console.wait_for_line`` follows a guest's serial console.
"""
