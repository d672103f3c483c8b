namespace OutboxComms.Core.Webhooks;

/// <summary>
/// A provider's Unix timestamp as an instant, or null when it names none a DateTimeOffset can
/// hold: a signed body with "timestamp": 99999999999999 is still a delivery report, not a crash (the
/// event is kept, timed by its receipt).
/// </summary>
internal static class UnixTime
{
    private const long MinSeconds = -62_135_596_800;   // 0001-01-01
    private const long MaxSeconds = 253_402_300_799;   // 9999-12-31 23:59:59

    public static DateTimeOffset? FromSeconds(long seconds) =>
        seconds is >= MinSeconds and <= MaxSeconds ? DateTimeOffset.FromUnixTimeSeconds(seconds) : null;

    public static DateTimeOffset? FromSeconds(double seconds) =>
        double.IsFinite(seconds) && seconds is >= MinSeconds and <= MaxSeconds ? DateTimeOffset.FromUnixTimeMilliseconds((long)(seconds * 1000)) : null;

    public static DateTimeOffset? FromMilliseconds(long milliseconds) =>
        milliseconds is >= MinSeconds * 1000 and <= MaxSeconds * 1000 ? DateTimeOffset.FromUnixTimeMilliseconds(milliseconds) : null;
}
