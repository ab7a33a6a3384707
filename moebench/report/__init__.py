"""Reading results: terminal tables, CSV and HTML reports, comparisons."""
