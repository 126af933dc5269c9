"""Programs around the project (not imported by the library): readable views of what DVC and Kedro produced."""
