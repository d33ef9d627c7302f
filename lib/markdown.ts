/** Markdown for the reports (drill, drift, bench, the capability table): one escaper for table cells. */

/**
 * Text that stays inside one table cell: `|` escaped, line breaks as `lineBreak`.
 * @default lineBreak " " (a cell has one line; drift shows several as <br>)
 */
export function mdCell(text: string, lineBreak = " "): string {
  return text.replace(/\|/g, "\\|").replace(/\r?\n/g, lineBreak);
}
