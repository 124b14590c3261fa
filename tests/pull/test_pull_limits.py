"""`models pull` trusts the server no further than the catalogue (issue 28, item 14), against the local hub: a body
never runs past the catalogue's size (or, without one, the cap), on plain URLs and through the Hub client alike;
component names never replace the models folder's own files; a `token_env` token goes only over HTTPS, only to
its `token_hosts`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from models.weights_pull.catalogue import load_catalogue
from models.weights_pull.errors import PullError
from models.weights_pull.pull import Puller
from models.weights_pull.sources import Retry
from models.weights_pull.store import ModelsDir
from tests.pull.hub_server import COMMIT, ENDLESS_BYTES
from tests.pull.pulling import dvd360, pull_env, sha256

BLOB = os.urandom(3 * 2**20 + 17)
MODEL = {"blob": {"sd15": "c", "motion_module": "c", "adapter": "c"}}


def catalogue(path: Path, file: dict, **component) -> Path:
    component = {"files": [{"path": "blob.bin", **file}], "entry": "blob.bin", **component}
    path.write_text(yaml.safe_dump({"components": {"c": component}, "models": MODEL}))
    return path


class Pull:
    """An in-process pull of model `blob` that counts the bytes it reports written."""

    def __init__(self, tmp: Path, catalogue_path: Path, **options) -> None:
        self.written = 0

        def progress(label, total, initial):
            def advance(n: int) -> None:
                self.written += n

            return advance

        self.models = tmp / "models"
        self.puller = Puller(
            catalogue=load_catalogue(catalogue_path), store=ModelsDir(self.models), retry=Retry(1, 0.0),
            progress=progress, say=lambda line: None, **options,
        )  # fmt: skip

    def run(self) -> None:
        self.puller.pull(["blob"])

    def nothing_kept(self) -> bool:
        files = [p for p in self.models.rglob("*") if p.is_file() and ".locks" not in p.parts]
        return not (self.models / "c").exists() and files == []


def test_a_body_past_the_declared_size_stops_there(server, tmp_path) -> None:
    """No length announced, an endless body: the download stops at the catalogue's size and fails."""
    server.files["blob.bin"] = BLOB
    server.faults.add("/files/blob.bin", "endless")
    pull = Pull(tmp_path, catalogue(tmp_path / "c.yaml", {"size": 1000, "urls": [f"{server.url}/files/blob.bin"]}))
    with pytest.raises(PullError, match="more than the catalogue's size, 1000 bytes"):
        pull.run()
    assert pull.written <= 1000 and pull.nothing_kept()
    assert server.sent["/files/blob.bin"] < ENDLESS_BYTES  # the client hung up


def test_an_announced_length_past_the_declared_size_is_refused_before_writing(server, tmp_path) -> None:
    server.files["blob.bin"] = BLOB
    pull = Pull(tmp_path, catalogue(tmp_path / "c.yaml", {"size": 4096, "urls": [f"{server.url}/files/blob.bin"]}))
    with pytest.raises(PullError, match="4096 bytes"):
        pull.run()
    assert pull.written == 0 and pull.nothing_kept()


def test_without_a_declared_size_the_cap_applies(server, tmp_path) -> None:
    server.files["blob.bin"] = BLOB
    server.faults.add("/files/blob.bin", "endless")
    pull = Pull(
        tmp_path, catalogue(tmp_path / "c.yaml", {"urls": [f"{server.url}/files/blob.bin"]}), max_undeclared_bytes=2**21
    )
    with pytest.raises(PullError, match="the cap for a file without a size in the catalogue, 2097152 bytes"):
        pull.run()
    assert pull.written <= 2**21 and pull.nothing_kept()


def test_the_hub_client_stops_at_the_declared_size_too(server, tmp_path) -> None:
    """The Hub announces the right length, then streams on without end: huggingface_hub's writer stops at the
    catalogue's size (left alone it writes everything the server sends, then checks). A real `dvd360 models pull`."""
    server.repos["tiny/blob"] = {"blob.bin": BLOB}
    path = f"/tiny/blob/resolve/{COMMIT}/blob.bin"
    server.faults.add(path, "endless")
    hub = {"hf": {"repo": "tiny/blob", "revision": COMMIT}}
    env = pull_env(server, tmp_path, catalogue(tmp_path / "c.yaml", {"size": len(BLOB)}, **hub))
    done = dvd360(env, "models", "pull", "blob")
    assert done.returncode == 1 and f"more than the catalogue's size, {len(BLOB)} bytes" in done.stderr, done.stderr
    models = tmp_path / "models"
    kept = [p.stat().st_size for p in models.rglob("*") if p.is_file() and ".locks" not in p.parts]
    assert max(kept, default=0) <= len(BLOB) and not (models / "c").exists()
    assert server.sent[path] < ENDLESS_BYTES / 4  # the client hung up near the declared size


@pytest.mark.parametrize("name", ["registry.yaml", "models.lock.json"])
def test_component_names_of_the_stores_own_files_are_refused(tmp_path, name) -> None:
    path = tmp_path / "c.yaml"
    models = {"blob": {"sd15": name, "motion_module": name, "adapter": name}}
    files = [{"path": "blob.bin", "urls": ["https://example.com/blob.bin"]}]
    path.write_text(yaml.safe_dump({"components": {name: {"files": files}}, "models": models}))
    with pytest.raises(PullError, match=f"component name '{name}' is reserved"):
        load_catalogue(path)


def test_a_token_goes_only_over_https_to_its_hosts(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DVD360_TEST_TOKEN", "secret-token")
    server.files["blob.bin"] = BLOB
    url = f"{server.url}/files/blob.bin"
    file = {"urls": [url], "sha256": sha256(BLOB)}
    path = catalogue(tmp_path / "c.yaml", file, token_env="DVD360_TEST_TOKEN", token_hosts=["127.0.0.1"])
    pull = Pull(tmp_path, path)
    pull.run()  # plain HTTP to a configured host: pulled, without the token
    assert (pull.models / "c" / "blob.bin").read_bytes() == BLOB
    assert [auth for p, auth in server.authorization if p == "/files/blob.bin"] == [None]

    component = pull.puller.catalogue.components["c"]
    civitai = component.model_copy(update={"token_hosts": ("civitai.com",)})
    assert civitai.bearer_headers("https://civitai.com/api/download/models/1") == {
        "Authorization": "Bearer secret-token"
    }  # fmt: skip
    assert civitai.bearer_headers("https://CIVITAI.com/x") != {}
    for elsewhere in ("http://civitai.com/x", "https://civitai.com.example.net/x", "https://example.com/x", url):
        assert civitai.bearer_headers(elsewhere) == {}, elsewhere

    catalogue(tmp_path / "c.yaml", file, token_env="DVD360_TEST_TOKEN")  # no hosts named: refused
    with pytest.raises(PullError, match="token_env needs token_hosts"):
        load_catalogue(tmp_path / "c.yaml")
