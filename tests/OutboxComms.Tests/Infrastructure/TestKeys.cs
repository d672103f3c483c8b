using OutboxComms.Core.Companies;
using OutboxComms.Core.Security;

namespace OutboxComms.Tests.Infrastructure;

/// <summary>Fixed keys for tests (never used anywhere else).</summary>
public static class TestKeys
{
    public const string Encryption = "test1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    public const string RotatedEncryption = "test2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=," + Encryption;
    public const string Admin = "oc_admin_test_key_0123456789abcdef0123456789";

    /// <summary>Where a company_settings column's secret is stored (e.g. whatsapp_api_key_encrypted), as its encryption binds it.</summary>
    public static SecretSlot Slot(Guid company, string column) =>
        CompanySettings.SecretColumns.Values.Contains(column) ? new(company, column) : throw new ArgumentException($"{column} is not a secret column", nameof(column));
}
