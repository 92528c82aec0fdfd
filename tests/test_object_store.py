"""A cache on an S3-compatible object store (moto's server on loopback), through fsspec URLs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from litcache.cache.reader import open_cache
from litcache.config import PipelineConfig
from litcache.errors import CacheError
from litcache.extract.run import extract
from litcache.train.stream import CacheStream


def test_a_credentials_error_is_known_by_name_and_through_the_errors_it_caused() -> None:
    from litcache.errors import store_access_error

    class NoCredentialsError(Exception):  # botocore's, as far as the name goes
        pass

    try:
        try:
            raise NoCredentialsError("Unable to locate credentials")
        except NoCredentialsError as exc:
            raise RuntimeError("zarr could not open the group") from exc
    except RuntimeError as exc:
        error = store_access_error(exc, "s3://bucket/run.zarr")
    assert error is not None
    assert str(error).startswith("s3://bucket/run.zarr: the object store refused access (NoCredentialsError")
    assert store_access_error(RuntimeError("a bug"), "s3://bucket/run.zarr") is None


moto_server = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
pytest.importorskip("s3fs", reason="s3fs is in the test extra")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import s3fs

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    if not fs.exists("litcache-test"):
        fs.mkdir("litcache-test")
    return "s3://litcache-test"


@pytest.mark.slow
def test_extract_to_s3_and_stream_back(
    s3_env: str, tiny_cfg: PipelineConfig, teacher_path: Path, cache_path: Path
) -> None:
    url = f"{s3_env}/run1.zarr"
    summary = extract(tiny_cfg, str(teacher_path), url, show_progress=False)
    assert summary["complete"]
    remote, local = open_cache(url), open_cache(str(cache_path))
    assert remote.verify() == []
    for name in local.data_arrays():  # the same extraction, bit for bit, whatever the store
        assert np.array_equal(remote.array(name)[:], local.array(name)[:]), name
    stream = CacheStream(remote, ["input", "boundary/1"], tiny_cfg.stream)
    rows = np.concatenate([b["row"].numpy() for b in stream.epoch(0)])
    assert len(rows) == len(set(rows.tolist())) == stream.num_batches(0) * tiny_cfg.stream.batch_size
    with pytest.raises(CacheError, match="--resume"):
        extract(tiny_cfg, str(teacher_path), url, show_progress=False)


def test_shards_on_s3_are_read_by_index(s3_env: str, data_dir: Path, tiny_cfg: PipelineConfig) -> None:
    """Shards at an s3:// URL (and their index kept there too) give the same samples as the local copy."""
    import dataclasses

    import s3fs

    from litcache.data import forget_opened, load_images

    fs = s3fs.S3FileSystem()
    for shard in data_dir.glob("*.tar"):
        fs.put_file(str(shard), f"{s3_env}/cifar/{shard.name}")
    local = load_images(tiny_cfg.data, "train")
    remote_cfg = dataclasses.replace(tiny_cfg.data, source=f"{s3_env}/cifar", index_dir=f"{s3_env}/index")
    remote = load_images(remote_cfg, "train")
    assert remote.identity == local.identity == "wds:train-0.tar"
    assert remote.fingerprint() == local.fingerprint()
    assert len(fs.glob(f"{s3_env}/index/wds-*.npz")) == 1  # kept beside the data for every worker
    picked = np.array([0, 33, 63, 1])
    assert all(np.array_equal(a, b) for a, b in zip(remote.read(picked), local.read(picked), strict=True))
    forget_opened()
    assert load_images(remote_cfg, "test").describe() == load_images(tiny_cfg.data, "test").describe()


@pytest.fixture
def no_credentials(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An S3 endpoint, and nothing botocore could take credentials from."""
    import s3fs

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "s3://litcache-test/run.zarr"],
        ["train-sections", "-p", "tiny", "-c", "s3://litcache-test/run.zarr", "-o", "{tmp}/sections"],
        ["kd", "-p", "tiny", "-c", "s3://litcache-test/run.zarr", "-s", "{tmp}/sections", "-o", "{tmp}/student.pt"],
        ["extract", "-p", "tiny", "--teacher", "{teacher}", "-d", "s3://litcache-test/cifar", "-o", "{tmp}/c.zarr"],
    ],
    ids=["inspect", "train-sections", "kd", "extract-from-s3-data"],
)
def test_an_object_store_without_credentials_is_one_line_that_says_what_to_give(
    no_credentials: None, args: list[str], tmp_path: Path, teacher_path: Path
) -> None:
    from click.testing import CliRunner

    from litcache.cli.main import main

    args = [a.format(tmp=tmp_path, teacher=teacher_path) for a in args]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's one line, not a traceback
    (line,) = result.output.strip().splitlines()
    assert "s3://litcache-test/" in line and "refused access (NoCredentialsError" in line, line
    assert "AWS_ACCESS_KEY_ID" in line, line
    assert not (tmp_path / "sections").exists() and not (tmp_path / "c.zarr").exists()  # nothing begun
