#!/usr/bin/env python3
"""A real SMTP server for the tests: aiosmtpd (Debian's python3-aiosmtpd) on a free loopback port.

It accepts AUTH PLAIN/LOGIN for one user over plain text, and writes what it sees into --spool:
  <n>.eml          the message exactly as received (DATA)
  <n>.json         its envelope: {"connection", "mail_from", "rcpt_tos", "login"} (written last: its
                   presence means the .eml is complete)
  connections.log  "open <id>" / "closed <id>" per client connection, so a test can see reuse and closing

Recipients decide the answer, so error handling is tested against real replies:
  reject-550...@   RCPT is answered 550 5.1.1 (user unknown)
  relay-554...@    RCPT is answered 554 5.7.1 (relay access denied: a policy refusal, not a bad address)
  defer-451...@    RCPT is answered 451 4.7.1 (greylisted)
  spam-554...@     DATA is answered 554 5.7.1 (message refused)
  full-552...@     RCPT is answered 552 5.2.2 (mailbox full: persistent transient, RFC 3463)
  quota-550...@    RCPT is answered 550 5.4.5 (Gmail's daily sending quota used up)
  m365quota-554...@ DATA is answered 554 5.2.0 SubmissionQuotaExceededException (Microsoft 365's quota)
and a login starting with "busy" is answered 454 4.7.0 (temporary authentication failure).

Prints "READY <port>" once listening; exits when its standard input closes (the test process went away).
"""
import argparse
import asyncio
import itertools
import json
import os
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

connection_ids = itertools.count(1)
message_numbers = itertools.count(1)


def log_connection(spool, event, connection_id):
    with open(os.path.join(spool, "connections.log"), "a", encoding="ascii") as log:
        log.write(f"{event} {connection_id}\n")


class RecordingSMTP(SMTP):
    """Gives each connection an id and notes when it opens and closes."""

    def __init__(self, *args, spool, **kwargs):
        self.spool = spool
        super().__init__(*args, **kwargs)

    def _create_session(self) -> Session:
        session = super()._create_session()
        session.connection_id = next(connection_ids)
        log_connection(self.spool, "open", session.connection_id)
        return session

    def connection_lost(self, error):
        log_connection(self.spool, "closed", self.session.connection_id)
        super().connection_lost(error)


class Spool:
    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject-550"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table"
        if local.startswith("relay-554"):
            return f"554 5.7.1 <{address}>: Relay access denied"
        if local.startswith("full-552"):
            return f"552 5.2.2 <{address}>: Recipient address rejected: Mailbox full"
        if local.startswith("quota-550"):
            return "550 5.4.5 Daily user sending quota exceeded. https://support.google.com/mail/?p=DailyLimitExceeded"
        if local.startswith("defer-451"):
            return f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(rcpt.lower().startswith("spam-554") for rcpt in envelope.rcpt_tos):
            return "554 5.7.1 Message refused: looks like spam"
        if any(rcpt.lower().startswith("m365quota-554") for rcpt in envelope.rcpt_tos):
            return ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; "
                    "Failed to process message due to a permanent exception with message Cannot submit message.")
        if any(rcpt.lower().startswith("closeafter") for rcpt in envelope.rcpt_tos):
            # Accepted; then the server ends the idle session (a restart, its idle timeout) while
            # the client still holds it in its pool: silently, or saying 421 first as most do.
            def close(transport, say421):
                if say421:
                    transport.write(b"421 4.4.2 Idle timeout, closing connection\r\n")
                transport.close()
            say421 = any(rcpt.lower().startswith("closeafter421") for rcpt in envelope.rcpt_tos)
            asyncio.get_running_loop().call_later(0.2, close, server.transport, say421)
        hangup = any(rcpt.lower().startswith("hangup") for rcpt in envelope.rcpt_tos)
        number = next(message_numbers)
        base = os.path.join(self.directory, str(number))
        with open(base + ".eml", "wb") as eml:
            eml.write(envelope.original_content or envelope.content)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        envelope_json = {
            "connection": session.connection_id,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": login,
        }
        with open(base + ".json.tmp", "w", encoding="utf-8") as meta:
            json.dump(envelope_json, meta)
        os.replace(base + ".json.tmp", base + ".json")
        if hangup:
            # The message arrived, and the connection drops before the reply: the client cannot know.
            server.transport.close()
        return f"250 2.0.0 Ok: queued as {number}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spool", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

    def authenticate(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.login.decode().startswith("busy"):
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == args.user
              and auth_data.password.decode() == args.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    loop = asyncio.new_event_loop()
    handler = Spool(args.spool)

    def protocol():
        return RecordingSMTP(
            handler,
            spool=args.spool,
            hostname="smtp.test",
            authenticator=authenticate,
            auth_require_tls=False,
            loop=loop,
        )

    server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)

    def stop_when_stdin_closes():
        sys.stdin.read()
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
