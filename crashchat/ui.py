"""The chat tab (placeholder until the chat tab issue lands)."""

import gradio as gr


def build(model: str | None = None) -> None:
    gr.Markdown("The chat tab is being built.")
