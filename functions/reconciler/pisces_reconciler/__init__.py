"""The reconciler function: releases holds that dead gateway containers left (EventBridge schedule)."""
