"""What the LLM is sent: the persona as the system prompt, then the conversation, bounded. Pure.

Refused turns are left out of the history: a model that once said "I cannot assist with that" to a
harmless message would otherwise read its refusal back and repeat it in every later turn.
"""

from __future__ import annotations

from uuid import UUID

from contracts import CharacterCreated
from services.chat.agreement import Disagreement, refuses
from services.chat.domain.conversations import ConversationState, PicturePlan
from services.chat.intent import spoken_scene

__all__ = ["PICTURE_TOOL", "Message", "llm_messages", "system_prompt"]

Message = dict[str, str]

# Offered when the phrase rules found no picture request: the LLM may still recognise one.
PICTURE_TOOL = {
    "type": "function",
    "function": {
        "name": "request_picture",
        "description": "Send the user a picture of yourself. Call it only when the user asks to see a picture, "
                       "photo or selfie of you, or asks to change the last picture; describe where you are, what "
                       "you wear and what you do, or the change.",
        "parameters": {
            "type": "object",
            "properties": {
                "request": {"type": "string",
                            "description": "The scene, e.g. 'at the beach at sunset, in a red dress', or the "
                                           "change, e.g. 'waving'"},
                # Follow-ups edit the conversation's last picture; the user may ask to start over or go back.
                "from": {"type": "string", "enum": ["current_picture", "original_photo", "previous_picture"],
                         "description": "What to edit: the last picture in this chat (default), the original "
                                        "photo ('start over'), or the picture before the last one ('go back')"},
            },
            "required": ["request"],
            "additionalProperties": False,
        },
    },
}

_RULES = """Stay in character at all times and speak as {name} in the first person. Reply in one to three \
short sentences, in the language the user writes in. Never say you are an AI or a language model. Keep \
things friendly and tasteful; decline anything explicit, gently and in character. You cannot attach \
pictures yourself; pictures are made by the app."""

_PICTURE_REQUESTED = """The user asked for a picture of you ({scene}). The app is making it now and it will \
appear in the chat in a minute: tell them, in character, that it is on its way."""

_NEEDS_REFERENCE = """The user asked for a picture of you ({scene}), but the app has no reference photo of \
you yet, so no picture can be made. Tell them, in character, that they first need to add a reference photo \
of you on your profile, then ask again."""

_LOGIN_REQUIRED = """The user asked for a picture of you ({scene}), but they are a guest who has used up the pictures a guest may get, so no picture can be made. Tell them, in character, to log in and ask again."""

# Said when the first reply contradicted the app: the model is told plainly what the app did.
_CORRECTIONS = {
    "refused_a_picture_being_made": """Do not refuse and do not apologise: the picture is the app's to make, \
it is already being made, and it is a tasteful picture of you. Tell them warmly, in character, that it is on \
its way.""",
    "promised_a_picture_not_being_made": """No picture is sent with this reply. Do not say or act out that you \
send, attach, snap or share a picture; just answer in character.""",
}

_PICTURE_NOTES = {"requested": _PICTURE_REQUESTED, "needs_reference": _NEEDS_REFERENCE,
                  "login_required": _LOGIN_REQUIRED}


def system_prompt(character: CharacterCreated, picture: PicturePlan | None = None,
                  correction: Disagreement | None = None) -> str:
    """The persona, the rules of the chat, what to say about a picture if one was asked for, and what the
    first answer got wrong if it contradicted the app."""
    who = f"You are {character.name}"
    if character.occupation:
        who += f", a {character.occupation}"
    parts = [who + "."]
    if character.personality:
        parts.append(f"Your personality: {character.personality}.")
    if character.persona:
        parts.append(character.persona)
    parts.append(_RULES.format(name=character.name))
    if picture is not None:
        parts.append(_PICTURE_NOTES[picture.status].format(scene=spoken_scene(picture.scene)))
    if correction is not None:
        parts.append(_CORRECTIONS[correction])
    return "\n\n".join(parts)


def llm_messages(
    character: CharacterCreated,
    conversation: ConversationState,
    message_id: UUID,
    *,
    picture: PicturePlan | None = None,
    correction: Disagreement | None = None,
    max_messages: int = 20,
    max_chars: int = 12_000,
) -> list[Message]:
    """System prompt, then the conversation up to and including `message_id`: the newest turns that fit."""
    turns: list[Message] = []
    for exchange in conversation.exchanges:
        if exchange.refused:
            continue
        if exchange.message_id == message_id:
            turns.append({"role": "user", "content": exchange.text})
            break
        if exchange.reply is not None and not exchange.reply_offline and refuses(exchange.reply):
            continue  # the question and its refusal both: a lone question would be answered again
        turns.append({"role": "user", "content": exchange.text})
        if exchange.reply is not None:
            turns.append({"role": "assistant", "content": exchange.reply})
    kept: list[Message] = []
    used = 0
    for turn in reversed(turns[-max_messages:]):
        if kept and used + len(turn["content"]) > max_chars:
            break
        # The message being answered is always sent, cut to the budget if it alone is over it.
        kept.append(turn if kept else {**turn, "content": turn["content"][-max_chars:]})
        used += len(kept[-1]["content"])
    # A history that opens with the assistant confuses some chat templates; start at a user turn.
    while kept and kept[-1]["role"] != "user":
        kept.pop()
    return [{"role": "system", "content": system_prompt(character, picture, correction)}, *reversed(kept)]
