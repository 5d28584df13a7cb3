"""Training WebSocket fan-out: each message is encoded once for all clients of a run, and a client gets
exactly the bytes ``send_json`` would have written; a message a client's screen changes is encoded for it."""

from __future__ import annotations

import asyncio
import json

from ctrops_gateway import training_live as live
from ctrops_gateway.live import Hub


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.encoded_here = 0

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_json(self, data) -> None:  # what starlette's WebSocket.send_json writes
        self.encoded_here += 1
        self.sent.append(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def test_encode_is_what_send_json_writes():
    message = {"type": "log", "message": "에폭 1/3 완료", "value": 0.5}
    assert live.encode(message) == json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def test_one_encoding_reaches_every_client_and_screened_messages_are_encoded_per_client():
    async def go() -> None:
        hub = Hub()
        queues = [hub.subscribe("training:r") for _ in range(3)]
        epoch = {"type": "epoch_update", "epoch": 2, "attempt": 1, "loss": 0.1}
        hub.publish("training:r", {**epoch, "_key": "e2:epoch_update", "_final": False, "_text": live.encode(epoch)})
        fanned = [q.get_nowait() for q in queues]
        assert all(m is fanned[0] for m in fanned)  # one dict, one encoding, for every client

        sockets = []
        for i, message in enumerate(fanned):
            socket = FakeSocket()
            sent = live._Sent()
            if i == 2:
                sent.shown_epoch = 5  # this client already saw epoch 5: epoch 2 is a replay, announced instead
            outgoing = {k: v for k, v in message.items() if not k.startswith("_")}
            await live._Outbox(socket, sent).offer(message["_key"], outgoing, text=message["_text"])
            sockets.append(socket)
        assert sockets[0].sent == sockets[1].sent == [fanned[0]["_text"]]
        assert sockets[0].encoded_here == sockets[1].encoded_here == 0
        assert json.loads(sockets[2].sent[0])["type"] == "log" and sockets[2].encoded_here == 1

    asyncio.run(go())
