"""What the pool offers: DescribeImages, DescribeAvailabilityZones, DescribeInstanceTypes."""

from collections.abc import Mapping

from vws.ec2 import ids
from vws.ec2.actions.door import Action, Door
from vws.ec2.errors import Ec2Error
from vws.ec2.query import Data, Params


def actions(door: Door) -> Mapping[str, Action]:
    return {
        "DescribeImages": Action(lambda caller, params: images(door, params), changes_state=False),
        "DescribeAvailabilityZones": Action(lambda caller, params: zones(door, params), changes_state=False),
        "DescribeInstanceTypes": Action(lambda caller, params: types(door, params), changes_state=False),
    }


def images(door: Door, params: Params) -> Data:
    available = {ids.image_id(name): name for name in door.images()}
    wanted = params.each("ImageId")
    missing = [image for image in wanted if image not in available]
    if missing:
        raise Ec2Error("InvalidAMIID.NotFound", f"The image ids '[{', '.join(missing)}]' do not exist")
    return {
        "imagesSet": [
            {
                "imageId": image,
                "imageLocation": f"file://{name}",
                "imageState": "available",
                "imageOwnerId": "vws",
                "isPublic": True,
                "architecture": "x86_64",
                "imageType": "machine",
                "name": name,
                "rootDeviceType": "instance-store",
                "virtualizationType": "hvm",
                "hypervisor": "kvm",
            }
            for image, name in sorted(available.items(), key=lambda entry: entry[1])
            if not wanted or image in wanted
        ]
    }


def zones(door: Door, params: Params) -> Data:
    wanted = params.each("ZoneName")
    if wanted and wanted != [door.shape.zone]:
        unknown = next(zone for zone in wanted if zone != door.shape.zone)
        raise Ec2Error("InvalidParameterValue", f"Invalid availability zone: [{unknown}]")
    region = door.shape.zone[:-1]
    return {
        "availabilityZoneInfo": [
            {"zoneName": door.shape.zone, "zoneState": "available", "regionName": region, "zoneId": f"{region}-az1"}
        ]
    }


def types(door: Door, params: Params) -> Data:
    wanted = params.each("InstanceType")
    unknown = [name for name in wanted if name not in door.shape.types]
    if unknown:
        raise Ec2Error("InvalidInstanceType", f"The following supplied instance types do not exist: [{unknown[0]}]")
    return {
        "instanceTypeSet": [
            {
                "instanceType": name,
                "currentGeneration": True,
                "supportedUsageClasses": ["on-demand"],
                "vCpuInfo": {"defaultVCpus": vcpus},
                "memoryInfo": {"sizeInMiB": memory},
                "hypervisor": "kvm",
            }
            for name, (vcpus, memory) in door.shape.types.items()
            if not wanted or name in wanted
        ]
    }
