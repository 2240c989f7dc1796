"""Small pieces every flow uses: payload helpers, metadata tables, the write-mode switch."""
