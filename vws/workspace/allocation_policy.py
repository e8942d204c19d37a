"""What ``[policy]`` allows one workspace to be granted: memory, CPU share and bandwidth.

The same checks refuse a create and a renegotiation (RequestDenied, the request-denied
fault), so a workspace can never be renegotiated past what it could have been created with.
"""

from vws.config import PolicyConfig
from vws.errors import RequestDenied
from vws.pool.machine import MachineRequest

BITS_PER_KIB = 8 * 1024  # libvirt shapes in KiB/s; the policy speaks megabits/s


def check_allocation(policy: PolicyConfig, machine: MachineRequest) -> None:
    if policy.maximum_memory_mb and machine.memory_mb > policy.maximum_memory_mb:
        raise RequestDenied(f"{machine.memory_mb} MB requested; at most {policy.maximum_memory_mb} MB allowed")
    if machine.cpu_percent is not None and machine.cpu_percent > policy.maximum_cpu_percentage:
        raise RequestDenied(
            f"CPUPercentage {machine.cpu_percent} requested; at most {policy.maximum_cpu_percentage} allowed"
        )
    if policy.maximum_bandwidth_mbps:
        limit = -(-policy.maximum_bandwidth_mbps * 1_000_000 // BITS_PER_KIB)  # as a request at it is rounded
        for shaping in machine.bandwidth:
            for direction, rate in (("incoming", shaping.inbound), ("outgoing", shaping.outbound)):
                if rate is not None and max(rate.average_kbytes, rate.peak_kbytes or 0) > limit:
                    raise RequestDenied(
                        f"nic {shaping.nic}: {direction} bandwidth above the {policy.maximum_bandwidth_mbps} "
                        "megabits/s allowed"
                    )
