"""Follow-up pictures in a conversation: an edit continues from the last accepted picture, "start over"
starts from the reference photo, "go back to the previous picture" picks the one before."""

from __future__ import annotations

import uuid

import pytest

from contracts import ChatPictureSelected, ImageRef, ImageRequestedInChat, RequestChain
from services.chat.domain.conversations import Picture, current_picture, edit_base
from services.chat.follow_up import basis_only, edit_request, picture_basis
from tests.unit.chat.helpers import REFERENCE, Talk, message_id


def image(n: int) -> ImageRef:
    return ImageRef(sha256=f"{n:064x}", media_type="image/png", width=512, height=512, bytes=1000)


def chain_of(n: int) -> uuid.UUID:
    return uuid.uuid5(message_id(n), "chain")


def accepted(n: int, *, steps: int = 2, parent: int | None = None) -> Picture:
    return Picture(chain_of(n), image(n), steps - 1, chain_of(parent) if parent else None)


@pytest.mark.parametrize(("text", "basis"), [
    ("now make her wave", "continue"),
    ("send me a pic at the beach", "continue"),
    ("start over: on a beach", "original"),
    ("from the original photo, in a red dress", "original"),
    ("use your reference photo and put her in a hat", "original"),
    ("go back to the previous picture", "previous"),
    ("the one before that please", "previous"),
    ("undo that", "previous"),
    ("let's go back to the bar", "continue"),
])
def test_the_words_say_which_picture_an_edit_starts_from(text: str, basis: str) -> None:
    assert picture_basis(text) == basis


@pytest.mark.parametrize(("text", "only"), [
    ("go back to the previous picture", True),
    ("Go back to the previous one.", True),
    ("undo that", True),
    ("start over", True),
    ("go back to the previous picture and make her wave", False),
    ("start over: on a beach", False),
    ("we went back to the bar", False),
])
def test_a_message_that_only_goes_back_is_told_apart(text: str, only: bool) -> None:
    assert basis_only(text) is only


@pytest.mark.parametrize(("text", "edit"), [
    ("now make her wave", "make her wave"),
    ("ok, change the background to a beach at night", "change the background to a beach at night"),
    ("can you put on a hat?", "put on a hat"),
    ("go back to the previous picture and make her smile", "make her smile"),
    ("make me a sandwich", None),
    ("change the subject", None),
    ("I want to make it work", None),
    ("have a nice day", None),
])
def test_edit_instructions_are_found_and_ordinary_talk_is_not(text: str, edit: str | None) -> None:
    assert edit_request(text) == edit


def test_an_edit_without_a_picture_word_continues_from_the_last_accepted_picture() -> None:
    talk = Talk()
    talk.receive("send me a selfie at the beach", 1)
    pictures = {chain_of(1): accepted(1, steps=2)}
    events = talk.receive("now make her wave", 2, pictures=pictures)
    requested = events[-1]
    assert isinstance(requested, ImageRequestedInChat)
    assert (requested.request_text, requested.parent_chain_id) == ("make her wave", chain_of(1))
    command = talk.commands[-1]
    assert command == RequestChain(chain_id=chain_of(2), character_id="luna", user_id="u1",
                                   request_text="make her wave", reference_image=REFERENCE,
                                   parent_chain_id=chain_of(1), branch_from_step=1, input_image=image(1))


def test_an_edit_with_no_picture_yet_is_just_talk_and_a_picture_still_being_made_is_not_edited() -> None:
    talk = Talk()
    assert [e.type for e in talk.receive("make her wave", 1)] == ["chat.conversation_started",
                                                                   "chat.user_message_sent"]
    talk.receive("send me a selfie", 2)
    # chain 2 has not completed: there is nothing to edit yet, so a new picture request starts from the photo.
    talk.receive("send me a pic in a red dress", 3, pictures={})
    assert talk.commands[-1].parent_chain_id is None and talk.commands[-1].input_image is None


def test_start_over_edits_the_reference_photo() -> None:
    talk = Talk()
    talk.receive("send me a selfie", 1)
    talk.receive("send me a pic from the original photo, in a red dress", 2, pictures={chain_of(1): accepted(1)})
    assert talk.commands[-1].parent_chain_id is None and talk.commands[-1].input_image is None


def test_go_back_picks_the_picture_the_current_one_was_edited_from() -> None:
    talk = Talk()
    talk.receive("send me a selfie", 1)
    pictures = {chain_of(1): accepted(1)}
    talk.receive("now make her wave", 2, pictures=pictures)
    pictures[chain_of(2)] = accepted(2, parent=1)
    assert current_picture(talk.state, pictures).chain_id == chain_of(2)
    assert edit_base(talk.state, pictures, "previous").chain_id == chain_of(1)
    events = talk.receive("go back to the previous picture", 3, pictures=pictures)
    assert events[-1] == ChatPictureSelected(conversation_id=events[-1].conversation_id, message_id=message_id(3),
                                             chain_id=chain_of(1))
    assert len(talk.commands) == 2  # going back makes nothing new
    # ... and the next edit continues from the picture gone back to.
    talk.receive("now put her in a red dress", 4, pictures=pictures)
    assert talk.commands[-1].parent_chain_id == chain_of(1) and talk.commands[-1].input_image == image(1)


def test_go_back_from_a_picture_made_from_the_photo_picks_the_one_asked_before_it() -> None:
    talk = Talk()
    talk.receive("send me a selfie", 1)
    talk.receive("send me a pic from the original photo, at a cafe", 2, pictures={chain_of(1): accepted(1)})
    pictures = {chain_of(1): accepted(1), chain_of(2): accepted(2)}
    talk.receive("go back to the previous one and make her smile", 3, pictures=pictures)
    assert talk.commands[-1].parent_chain_id == chain_of(1)


def test_start_over_alone_moves_back_to_the_reference_photo() -> None:
    talk = Talk()
    talk.receive("send me a selfie", 1)
    pictures = {chain_of(1): accepted(1)}
    events = talk.receive("start over", 2, pictures=pictures)
    assert isinstance(events[-1], ChatPictureSelected) and events[-1].chain_id is None
    assert current_picture(talk.state, pictures) is None
    talk.receive("send me a pic at the beach", 3, pictures=pictures)
    assert talk.commands[-1].parent_chain_id is None


def test_a_reply_tool_call_that_says_from_the_previous_picture_branches_from_it() -> None:
    talk = Talk()
    talk.receive("send me a selfie", 1)
    pictures = {chain_of(1): accepted(1)}
    talk.receive("now make her wave", 2, pictures=pictures)
    pictures[chain_of(2)] = accepted(2, parent=1)
    talk.receive("hmm, I liked her better before with a hat", 3, pictures=pictures)
    (requested, _replied) = talk.reply(3, "Here you go!", picture_scene="wearing a hat", basis="previous",
                                       pictures=pictures)
    assert requested.parent_chain_id == chain_of(1)
    assert talk.commands[-1].input_image == image(1) and talk.commands[-1].branch_from_step == 1
