"""Attribute proposals (paper 4.1-4.2): ask an LLM, or rank a built-in vocabulary offline, for the uncommon
values of an attribute (background, colour, user-defined) per class; then merge redundant values.

    from core.describe.proposals import propose, dedupe_proposals, BACKGROUND
    proposals = propose(BACKGROUND, ["camel", "goldfish"], proposer="llm", api_key=key)
    deduped = dedupe_proposals(proposals)
"""

from core.describe.proposals.attributes import BACKGROUND, BUILTIN, COLOUR, Attribute, custom_attribute, get_attribute
from core.describe.proposals.dedupe import DEFAULT_THRESHOLD, DedupeResult, Merge, dedupe, dedupe_proposals
from core.describe.proposals.embed import Embedder, MiniLMEmbedder, default_embedder, open_clip_text_embedder
from core.describe.proposals.llm import (
    LLMAuthError,
    LLMConfig,
    LLMConnectionError,
    LLMError,
    LLMKeyMissingError,
    LLMOutputError,
    LLMProposer,
    LLMRateLimitError,
    LLMRefusalError,
    LLMTimeoutError,
)
from core.describe.proposals.offline import OfflineProposer, builtin_vocab, offline_vocab, world_values
from core.describe.proposals.proposal import PROPOSERS, Proposal, ProposalError, Proposer, choose_proposer, propose

__all__ = [
    "Attribute",
    "BACKGROUND",
    "COLOUR",
    "BUILTIN",
    "custom_attribute",
    "get_attribute",
    "DEFAULT_THRESHOLD",
    "DedupeResult",
    "Merge",
    "dedupe",
    "dedupe_proposals",
    "Embedder",
    "MiniLMEmbedder",
    "default_embedder",
    "open_clip_text_embedder",
    "PROPOSERS",
    "Proposal",
    "ProposalError",
    "Proposer",
    "choose_proposer",
    "propose",
    "LLMConfig",
    "LLMProposer",
    "LLMError",
    "LLMKeyMissingError",
    "LLMAuthError",
    "LLMConnectionError",
    "LLMTimeoutError",
    "LLMRateLimitError",
    "LLMRefusalError",
    "LLMOutputError",
    "OfflineProposer",
    "builtin_vocab",
    "offline_vocab",
    "world_values",
]
