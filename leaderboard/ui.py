"""The leaderboard tab (placeholder until the leaderboard issue lands)."""

import gradio as gr


def build() -> None:
    gr.Markdown("The leaderboard tab is being built.")
