#!/usr/bin/env python3
"""Writes an OCI image archive (an OCI image layout in a tar, what `ctr images import` and
`skopeo copy oci-archive:` read) from a root file system folder, with no Docker and no base image.

Reproducible: the same folder gives the same bytes, so the same digest. Every entry has the same
time (SOURCE_DATE_EPOCH, default 0), owner root (or what --owner says) and a normalised mode;
entries are sorted; gzip carries no name and no time.

  oci-image.py --rootfs DIR --ref NAME:TAG --out IMAGE.tar --config CONFIG.json
               [--owner PATH=UID:GID ...]

CONFIG.json is the image's runtime config ({"User": ..., "Entrypoint": ..., ...}). Prints the
manifest's digest.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile

EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def entry(name, kind, mode, owner, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = owner
    info.uname = info.gname = ""
    info.mtime = EPOCH
    info.size = size
    info.linkname = linkname
    return info


def layer(rootfs, owners):
    """The root file system as one uncompressed tar, deterministically."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        paths = []
        for folder, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs + files):
                paths.append(os.path.join(folder, name))
        for path in sorted(paths, key=lambda p: os.path.relpath(p, rootfs)):
            name = os.path.relpath(path, rootfs)
            owner = owners.get("/" + name, (0, 0))
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                tar.addfile(entry(name, tarfile.SYMTYPE, 0o777, owner, linkname=os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                # /tmp keeps its sticky, world-writable mode; every other folder is 0755.
                mode = 0o1777 if st.st_mode & stat.S_ISVTX else 0o755
                tar.addfile(entry(name + "/", tarfile.DIRTYPE, mode, owner))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(path, "rb") as f:
                    data = f.read()
                tar.addfile(entry(name, tarfile.REGTYPE, mode, owner, size=len(data)), io.BytesIO(data))
    return out.getvalue()


def blob(blobs, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rootfs", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--owner", action="append", default=[])
    a = p.parse_args()
    owners = {}
    for o in a.owner:
        path, ids = o.split("=")
        uid, gid = ids.split(":")
        owners[path] = (int(uid), int(gid))

    plain = layer(a.rootfs, owners)
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=compressed, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(plain)
    compressed = compressed.getvalue()

    blobs = {}
    layer_digest = blob(blobs, compressed)
    with open(a.config) as f:
        runtime = json.load(f)
    created = "1970-01-01T00:00:00Z" if EPOCH == 0 else __import__("datetime").datetime.fromtimestamp(
        EPOCH, __import__("datetime").timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(plain).hexdigest()]},
        "history": [{"created": created, "created_by": "tests/e2e/image.sh"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": len(compressed)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = blob(blobs, manifest_bytes)
    tag = a.ref.rsplit(":", 1)[1] if ":" in a.ref.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            # containerd names the image by the first; other OCI tools by the second.
            "annotations": {"io.containerd.image.name": a.ref, "org.opencontainers.image.ref.name": tag},
        }],
    }
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True, separators=(",", ":")).encode(),
    }
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":")[1]] = data
    with tarfile.open(a.out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for folder in ["blobs/", "blobs/sha256/"]:
            tar.addfile(entry(folder, tarfile.DIRTYPE, 0o755, (0, 0)))
        for name in sorted(files):
            data = files[name]
            tar.addfile(entry(name, tarfile.REGTYPE, 0o644, (0, 0), size=len(data)), io.BytesIO(data))
    print(manifest_digest)


if __name__ == "__main__":
    main()
