"""A shard cut short is called truncated wherever the cut falls, 512-byte tar block boundaries included."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from conftest import make_images, write_shard

from litcache.config import DataConfig
from litcache.data.decode import DecodeFailure, decode_image, image_size
from litcache.data.index import build_index
from litcache.data.sources import find_files
from litcache.errors import DataError


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    images, labels = make_images(6, seed=5)
    path = tmp_path_factory.mktemp("shard") / "train-0.tar"
    write_shard(path, "train", images, labels)
    return path.read_bytes()


def _end_of_members(data: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
    return last.offset_data + -(-last.size // 512) * 512


def test_a_shard_cut_anywhere_is_reported_as_truncated(shard: bytes, tmp_path: Path) -> None:
    complete = _end_of_members(shard) + 1024  # the members, then the end-of-archive marker
    cuts = sorted({*range(512, complete, 512), *range(100, complete, 1531)})  # every block boundary, and between
    folder = tmp_path / "data"
    folder.mkdir()
    said = {}
    for cut in cuts:
        (folder / "train-0.tar").write_bytes(shard[:cut])
        with pytest.raises(DataError) as exc:
            build_index(find_files(DataConfig(source=str(folder)), "train"))
        said[cut] = str(exc.value)
    wrong = {cut: m for cut, m in said.items() if f"{folder / 'train-0.tar'} is truncated " not in m}
    assert not wrong  # never "a sample with no label", never merely "corrupt"
    assert all("\n" not in m for m in said.values())
    (folder / "train-0.tar").write_bytes(shard[:complete])
    assert len(build_index(find_files(DataConfig(source=str(folder)), "train"))) == 6  # whole: no error


def test_a_missing_data_folder_is_called_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"data folder {tmp_path / 'gone'} is missing"):
        find_files(DataConfig(source=str(tmp_path / "gone")), "train")
    with pytest.raises(DataError, match=f"data folder {tmp_path / 'gone'} \\(of the pattern .*\\) is missing"):
        find_files(DataConfig(source=str(tmp_path / "gone" / "train-*.tar")), "train")


@pytest.mark.parametrize("read", [image_size, lambda data: decode_image(data, 3)], ids=["header", "pixels"])
def test_an_undecodable_image_is_not_described_by_pillows_buffer(read: object) -> None:
    with pytest.raises(DecodeFailure) as exc:
        read(b"these bytes are no image")  # type: ignore[operator]
    assert " object at 0x" not in str(exc.value) and "BytesIO" not in str(exc.value)
    assert "not an image in a format Pillow reads" in str(exc.value)
