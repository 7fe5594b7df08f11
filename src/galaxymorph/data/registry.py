"""Named public datasets: where they live, how to check them, their classes.

URLs and SHA-256 checksums are the ones astroNN publishes for its ``load_data`` (Zenodo
records, with the older University of Toronto server as a mirror).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from galaxymorph.data.classes import GALAXY10_DECALS, GALAXY10_SDSS


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    filename: str
    urls: list[str]
    sha256: str
    class_names: list[str]
    description: str
    mirrors: list[str] = field(default_factory=list)


KNOWN: dict[str, RemoteDataset] = {
    "galaxy10-decals": RemoteDataset(
        name="galaxy10-decals",
        filename="Galaxy10_DECals.h5",
        urls=[
            "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5",
            "https://www.astro.utoronto.ca/~hleung/shared/Galaxy10/Galaxy10_DECals.h5",
        ],
        sha256="19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571",
        class_names=GALAXY10_DECALS,
        description="17,736 DESI Legacy Surveys 256x256 g,r,z colour cutouts in 10 classes "
                    "(Leung & Bovy; Galaxy Zoo DECaLS votes, Walmsley et al. 2022), 2.7 GB",
    ),
    "galaxy10-sdss": RemoteDataset(
        name="galaxy10-sdss",
        filename="Galaxy10.h5",
        urls=[
            "https://zenodo.org/records/10844811/files/Galaxy10.h5",
            "https://www.astro.utoronto.ca/~hleung/shared/Galaxy10/Galaxy10.h5",
        ],
        sha256="969a6b1cefcc36e09fffa86febd2f699a4aa19b837ba0427f01b0bc6ded458af",
        class_names=GALAXY10_SDSS,
        description="21,785 SDSS 69x69 g,r,i colour cutouts in 10 classes (Galaxy Zoo 2 votes), 200 MB",
    ),
}
