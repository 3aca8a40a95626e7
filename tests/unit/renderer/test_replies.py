"""Reading /prompt rejections and /history entries in the shapes PROTOCOL.md §5 and §6.8 show."""

from __future__ import annotations

from services.renderer.comfyui.replies import ImageFile, images_of, outcome_of, partial_rejection, rejection

MISSING_FILE = {
    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "", "extra_info": {}},
    "node_errors": {"1": {"errors": [{"type": "custom_validation_failed",
                                      "message": "Custom validation failed for node",
                                      "details": "image - Invalid image file: nope_does_not_exist.png",
                                      "extra_info": {"input_name": "image"}}],
                          "dependent_outputs": ["5", "7"], "class_type": "LoadImage"}},
}


def test_a_400_with_node_errors_names_node_class_and_message() -> None:
    error = rejection(400, MISSING_FILE)
    assert (error.kind, error.node_id, error.node_type) == ("validation", "1", "LoadImage")
    assert "node 1 (LoadImage): Custom validation failed for node: image - Invalid image file" in error.reason


def test_an_unknown_class_names_the_node_from_details() -> None:
    body = {"error": {"type": "invalid_prompt", "message": "Cannot execute because node NoSuchNode does not exist.",
                      "details": "Node ID '#3'", "extra_info": {}}, "node_errors": {}}
    error = rejection(400, body)
    assert error.node_id == "3" and "NoSuchNode does not exist" in error.reason


def test_two_bad_nodes_are_both_named() -> None:
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "x", "details": ""}, "node_errors": {
        "2": {"errors": [{"type": "value_smaller_than_min", "message": "Value -1 smaller than min of 0",
                          "details": "width"}], "dependent_outputs": ["5"], "class_type": "ImageScale"},
        "4": {"errors": [{"type": "required_input_missing", "message": "Required input is missing",
                          "details": "sigma"}], "dependent_outputs": ["5"], "class_type": "ImageBlur"}}}
    reason = rejection(400, body).reason
    assert "node 2 (ImageScale)" in reason and "node 4 (ImageBlur)" in reason


def test_a_non_json_rejection_is_still_clear() -> None:
    assert "HTTP 400" in rejection(400, None).reason


def test_partially_invalid_graph_fails_only_when_our_output_is_dropped() -> None:
    node_errors = {"2": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                     "details": "upscale_method: 'magic' not in [...]"}],
                         "dependent_outputs": ["5"], "class_type": "ImageScale"}}
    assert partial_rejection(node_errors, "7") is None
    dropped = partial_rejection(node_errors, "5")
    assert dropped is not None and dropped.node_id == "2" and "Value not in list" in dropped.reason
    assert partial_rejection({}, "5") is None


def test_successful_history_entry() -> None:
    entry = {"prompt": [0, "42fa", {}, {"client_id": "c"}, ["5", "7"]],
             "outputs": {"5": {"images": [{"filename": "renderer_smoke_00001_.png", "subfolder": "",
                                           "type": "output"}]},
                         "7": {"images": [{"filename": "ComfyUI_temp_gbeva_00001_.png", "subfolder": "",
                                           "type": "temp"}]}},
             "status": {"status_str": "success", "completed": True,
                        "messages": [["execution_start", {"prompt_id": "42fa"}], ["execution_success", {}]]}}
    outcome = outcome_of(entry)
    assert outcome.finished and outcome.failure is None
    assert images_of(outcome.outputs, "5") == [ImageFile("renderer_smoke_00001_.png", "", "output")]
    assert images_of(outcome.outputs, "9") == []


def test_failed_history_entry_carries_the_execution_error() -> None:
    error = {"prompt_id": "4a8d", "node_id": "3", "node_type": "ImageScale", "exception_type": "RuntimeError",
             "exception_message": "Input and output sizes should be greater than 0\n"}
    messages = [["execution_start", {}], ["execution_error", error]]
    entry = {"outputs": {"6": {"images": []}},
             "status": {"status_str": "error", "completed": False, "messages": messages}}
    outcome = outcome_of(entry)
    assert outcome.failure.kind == "execution" and outcome.failure.node_type == "ImageScale"
    interrupted = {"status": {"status_str": "error", "messages": [["execution_interrupted", {"node_id": "4",
                                                                                          "node_type": "KSampler"}]]}}
    assert outcome_of(interrupted).failure.kind == "interrupted"
