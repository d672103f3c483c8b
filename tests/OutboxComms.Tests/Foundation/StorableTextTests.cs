using OutboxComms.Core.Messages;

namespace OutboxComms.Tests.Foundation;

public sealed class StorableTextTests
{
    [Fact]
    public void Text_loses_nul_characters_and_lone_surrogates_but_keeps_the_rest()
    {
        // Built in code: an attribute's string cannot carry a lone surrogate through metadata.
        Assert.Equal("Priya 🌸", StorableText.Of("Priya 🌸"));                       // a whole pair stays
        Assert.Equal("Priya \uFFFD", StorableText.Of("Priya " + '\uD83C'));          // half an emoji (its high half)
        Assert.Equal("\uFFFD Priya", StorableText.Of('\uDF38' + " Priya"));          // the low half
        Assert.Equal("AB", StorableText.Of("A\0B\0"));
        Assert.Null(StorableText.Of(null));
        var clean = "nothing to change";
        Assert.Same(clean, StorableText.Of(clean));
    }

    [Fact]
    public void Truncating_never_cuts_a_surrogate_pair_in_two()
    {
        Assert.Equal("ab…", StorableText.Truncate("ab🌸cd", 3));
        Assert.Equal("ab🌸…", StorableText.Truncate("ab🌸cd", 4));
        Assert.Equal("ab🌸", StorableText.Truncate("ab🌸", 4));
    }
}
