using Microsoft.Extensions.Options;
using OutboxComms.Core.Security;
using OutboxComms.Tests.Infrastructure;

namespace OutboxComms.Tests.Security;

public sealed class SecretRotationTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    private static SecretProtector With(string keys) => new(Options.Create(new EncryptionKeyOptions { Keys = keys }));

    [Fact]
    public async Task Rotation_reencrypts_every_secret_under_the_new_key_and_keeps_its_value()
    {
        var old = With(TestKeys.Encryption);
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        await using (var insert = db.DataSource.CreateCommand(
            "INSERT INTO company_settings (company_id, smtp_password_encrypted, whatsapp_api_key_encrypted, sms_api_key_encrypted) VALUES ($1, $2, $3, NULL)"))
        {
            insert.Parameters.AddWithValue(company);
            insert.Parameters.AddWithValue(old.Protect("smtp-password"));
            insert.Parameters.AddWithValue(old.Protect("whatsapp-token"));
            await insert.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var rotated = With(TestKeys.RotatedEncryption);

        await using (var context = db.CreateDbContext())
        {
            var result = await new SecretRotation(context, rotated).RotateAsync(TestContext.Current.CancellationToken);
            Assert.True(result.Reencrypted >= 2);
        }
        await using (var context = db.CreateDbContext())
        {
            Assert.Equal(0, (await new SecretRotation(context, rotated).RotateAsync(TestContext.Current.CancellationToken)).Reencrypted);
        }

        var smtp = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT smtp_password_encrypted FROM company_settings WHERE company_id = $1", company);
        var whatsApp = await TestData.ScalarAsync<byte[]>(db.DataSource, "SELECT whatsapp_api_key_encrypted FROM company_settings WHERE company_id = $1", company);
        Assert.Equal(("test2", "smtp-password"), (SecretProtector.KeyIdOf(smtp), rotated.Unprotect(smtp)));
        Assert.Equal(("test2", "whatsapp-token"), (SecretProtector.KeyIdOf(whatsApp), With("test2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=").Unprotect(whatsApp)));
    }
}
