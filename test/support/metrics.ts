/**
 * An app's Prometheus series by name with labels (`matrix_consumer_lag{stage="send",partition="0"}`), from its
 * metrics listener (`AppProcess.metricsUrl`). Throws when the listener does not answer 200, so that a test reading
 * the wrong port fails instead of seeing every series as missing.
 */
export async function scrapeMetrics(metricsUrl: string): Promise<Map<string, number>> {
  const res = await fetch(metricsUrl);
  if (!res.ok) throw new Error(`${metricsUrl} answered ${res.status}`);
  const series = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    const match = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (match) series.set(match[1], Number(match[2]));
  }
  return series;
}
