"""What a member's config drive carries under vws/context/: the bootstrap and the agent.

``bootstrap`` is a shell fragment the agent sources (every value is generated here, from
characters that need no quoting): where the broker's agent door is, the context's key and
secret, and until when (Unix seconds) the context lives, after which the agent gives up.
"""

from importlib import resources

from vws.context.broker import Credentials
from vws.workspace.request import ContextFile

AGENT = "agent.sh"


def drive_files(credentials: Credentials, agent_url: str) -> tuple[ContextFile, ...]:
    bootstrap = (
        f"VWS_CTX_URL={agent_url}\n"
        f"VWS_CTX_KEY={credentials.key}\n"
        f"VWS_CTX_SECRET={credentials.secret}\n"
        f"VWS_CTX_UNTIL={int(credentials.termination_time.timestamp())}\n"
    )
    return ContextFile("bootstrap", bootstrap), ContextFile(AGENT, agent_script())


def agent_script() -> str:
    return resources.files("vws.context").joinpath(AGENT).read_text()
