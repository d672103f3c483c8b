using System.Text;

namespace OutboxComms.Core.Messages;

/// <summary>
/// Text as PostgreSQL can store it. A <c>text</c> column holds no NUL character, and Npgsql's UTF-8
/// encoder refuses a lone UTF-16 surrogate — half an emoji, which a template cutting a string by
/// characters (<c>string.slice</c>, <c>string.truncate</c>) or a provider's error cut at a length
/// leaves behind. Either in one outcome used to fail the whole batch's write.
/// </summary>
public static class StorableText
{
    /// <summary><paramref name="text"/> without NUL characters and with each lone surrogate replaced by U+FFFD; the same instance when it has neither.</summary>
    public static string? Of(string? text)
    {
        if (text is null || (!text.Contains('\0', StringComparison.Ordinal) && text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0))
        {
            return text;
        }
        var clean = new StringBuilder(text.Length);
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\0')
            {
                continue;
            }
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                clean.Append(c).Append(text[++i]);
            }
            else
            {
                clean.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
            }
        }
        return clean.ToString();
    }

    /// <summary>At most <paramref name="length"/> characters and "…", never cutting a surrogate pair in two.</summary>
    public static string Truncate(string text, int length)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length <= length)
        {
            return text;
        }
        var cut = length > 0 && char.IsHighSurrogate(text[length - 1]) ? length - 1 : length;
        return string.Concat(text.AsSpan(0, cut), "…");
    }
}
