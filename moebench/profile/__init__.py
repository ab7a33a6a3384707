"""Where the time goes: region timers, cross-rank wait analysis, Kineto trace analysis, NVML sampling."""
