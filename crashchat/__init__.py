"""CrashChat: multitask traffic-crash video analysis with VideoLLaMA3 and task-group adapters."""

__version__ = "0.1.0"
