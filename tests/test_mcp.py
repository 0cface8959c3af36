"""The named API as Model Context Protocol tools (``python app.py --mcp``): the tool list names the four endpoints
with descriptions and parameters written for a reader, and a tool call through an MCP client ages a photo. The
server listens on 127.0.0.1 only; every wait is bounded."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import httpx
import pytest

import web
from tests.browser import launch

pytest.importorskip("mcp", reason="pip install 'gradio[mcp]' (requirements.txt)")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"


@pytest.fixture(scope="module")
def mcp_server(tiny_checkpoint):
    demo = web.build_demo(str(tiny_checkpoint), device="cpu")
    url = launch(demo, mcp=True)
    yield url
    demo.close()


def test_the_tool_list_names_the_four_endpoints_for_a_reader(mcp_server):
    tools = {t["name"]: t for t in httpx.get(f"{mcp_server}gradio_api/mcp/schema", timeout=30).json()}
    assert set(tools) == {"age", "mix", "lifespan", "video"}
    for tool in tools.values():
        assert tool["description"].startswith(("Show the person", "A video of the person", "Age the people"))
        assert "data: URIs" in tool["description"]  # how an assistant passes a file here
        assert all(p.get("description") for p in tool["inputSchema"]["properties"].values()), tool["name"]
    props = tools["age"]["inputSchema"]["properties"]
    assert {"image", "target_age", "faces", "paste_back"} <= set(props)
    assert "0 to 100" in props["target_age"]["description"]  # the docstring's words, for an assistant


def test_a_tool_call_through_an_mcp_client_ages_a_photo(mcp_server):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    photo = "data:image/png;base64," + base64.b64encode(ASTRONAUT.read_bytes()).decode()

    async def call() -> tuple[list[str], object]:
        async with streamable_http_client(f"{mcp_server}gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                return [t.name for t in listed.tools], await session.call_tool(
                    "age", {"image": photo, "target_age": 70, "size": 32})

    names, result = asyncio.run(asyncio.wait_for(call(), timeout=120))
    assert len(names) >= 4
    assert not result.isError, result.content
    kinds = {c.type for c in result.content}
    assert kinds & {"image", "text"}  # the aged picture (or its address), not an error
