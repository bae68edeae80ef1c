"""Outgoing mail: the outbox always, SMTP delivery when configured (against a real socket server)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import pytest
from flask import Flask

from academy.config import Settings
from academy.extensions import db
from academy.mail.models import OutboxMessage
from academy.mail.services import deliver_pending, queue_mail


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept messages: what the portal's smtplib client speaks."""

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        while line := self.rfile.readline():
            command = line.strip().upper()
            if command.startswith((b"EHLO", b"HELO")):
                self.wfile.write(b"250 test\r\n")
            elif command.startswith((b"MAIL", b"RCPT", b"RSET", b"NOOP")):
                self.wfile.write(b"250 OK\r\n")
            elif command == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = b""
                while (chunk := self.rfile.readline()) and chunk != b".\r\n":
                    body += chunk
                self.server.received.append(body)  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"502 not implemented\r\n")


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_messages_are_delivered_over_smtp_and_marked_sent(app: Flask, smtp_server: Any) -> None:
    settings = Settings(smtp_host="127.0.0.1", smtp_port=smtp_server.server_address[1])
    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "비밀번호 재설정", "링크: https://academy.test/reset/x")
        db.session.commit()
        assert deliver_pending(db.session, settings) == 1
        db.session.commit()
        message = db.session.scalar(db.select(OutboxMessage))
        assert message.sent_at is not None and message.error is None
        assert deliver_pending(db.session, settings) == 0  # sent once
    [raw] = smtp_server.received
    mail = message_from_bytes(raw)
    assert mail["To"] == "learner@example.kr"
    assert str(make_header(decode_header(mail["Subject"]))) == "비밀번호 재설정"


def test_an_unreachable_smtp_server_keeps_the_message_with_the_error(app: Flask) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = Settings(smtp_host="127.0.0.1", smtp_port=closed_port)
    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "subject", "body")
        db.session.commit()
        assert deliver_pending(db.session, settings) == 0
        db.session.commit()
        message = db.session.scalar(db.select(OutboxMessage))
        assert message.sent_at is None and "ConnectionRefusedError" in (message.error or "")


def test_without_smtp_the_outbox_is_the_delivery(app: Flask) -> None:
    with app.app_context():
        queue_mail(db.session, "learner@example.kr", "subject", "body")
        db.session.commit()
        assert deliver_pending(db.session, Settings()) == 0
        assert db.session.scalar(db.select(OutboxMessage)).sent_at is None
