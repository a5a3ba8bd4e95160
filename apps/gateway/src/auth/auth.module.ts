import { Module } from '@nestjs/common';
import { AppConfig } from '@app/config';
import { AuthGuard } from './auth.guard';
import { StaticTokens } from './static-tokens';

@Module({
  providers: [
    {
      provide: StaticTokens,
      inject: [AppConfig],
      useFactory: (config: AppConfig) =>
        config.MATRIX_TOKENS_FILE ? StaticTokens.fromFile(config.MATRIX_TOKENS_FILE) : new StaticTokens([]),
    },
    AuthGuard,
  ],
  exports: [AuthGuard, StaticTokens],
})
export class AuthModule {}
